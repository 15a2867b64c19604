"""The library's SHA-256 (it checks every cache entry and bundle kernel before
loading it) against hashlib, on both of its paths: the x86 SHA instructions
where the processor has them, and the portable loop (PASKDNN_SHA256=portable).
The digest is read from pask_context_add_code_object's checksum-mismatch
message, which reports the one it computed."""
import os
import re
import subprocess
import sys

import pytest

PROBE = r'''
import sys
import numpy as np
import paskdnn
from paskdnn import _lib
ffi, lib = _lib.load()
ctx = paskdnn.Context("cpu")
rng = np.random.default_rng(int(sys.argv[1]))
sizes = [1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 191, 192, 1000, 4096, 100003, 1 << 20]
sizes += [int(n) for n in rng.integers(1, 5000, 40)]
for n in sizes:
    data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    try:
        _lib.check(lib.pask_context_add_code_object(ctx._h(), b"native/cuda/gemm@sm_90", data, n, b"0" * 64))
    except paskdnn.InvalidArgumentError as e:
        print(n, data.hex(), str(e))
    else:
        raise SystemExit("a wrong checksum was accepted")
'''


@pytest.mark.parametrize("path", ["auto", "portable"])
def test_sha256_matches_hashlib_on_every_length_class(path):
    import hashlib

    env = dict(os.environ, PASKDNN_SHA256=path)
    out = subprocess.run([sys.executable, "-c", PROBE, "7"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 59
    for line in lines:
        n, hexdata, message = line.split(" ", 2)
        got = re.search(r"SHA-256 ([0-9a-f]{64}), expected", message)
        assert got, message
        data = bytes.fromhex(hexdata)
        assert len(data) == int(n)
        assert got.group(1) == hashlib.sha256(data).hexdigest(), n
