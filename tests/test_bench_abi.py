"""bench/cuda_kernels_check.py mirrors the kernels' parameter structs
(src/kernels/cuda/pask_cuda_abi.h) in ctypes and wraps their launch helpers in
C: checked here, without a GPU, so that a change to the ABI cannot leave the
GPU harness launching kernels with the wrong layout (it did, unnoticed, for
several sessions)."""
import ctypes
import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if shutil.which("cc") is None:
    pytest.skip("no C compiler", allow_module_level=True)


def load_harness():
    spec = importlib.util.spec_from_file_location("cuda_kernels_check", ROOT / "bench" / "cuda_kernels_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_harness_structs_match_the_c_abi_and_its_launch_helpers_build():
    h = load_harness()
    lib = h.build_geom()  # asserts sizeof of each struct against ctypes
    for name in ("sz_conv", "sz_gemm", "sz_pool"):
        assert getattr(lib, name)() > 0
    # a MobileNetV2 1x1 expansion at batch 32: the launch helper's grid, through the ctypes struct
    p = h.ConvP(n=32, c=16, h=112, w=112, o=96, kh=1, kw=1, oh=112, ow=112, stride_h=1, stride_w=1, dil_h=1,
                dil_w=1, groups=1, layout=h.NHWC, weight_layout=h.NHWC)
    h.GEOM = lib
    grid, block, smem = h.geometry("conv2d_igemm", p, 2)
    assert grid[0] * (128 if block[0] == 256 else 64) >= 32 * 112 * 112
    assert smem == (81920 if block[0] == 256 else 40960) and p.splits == 1
    # splits, a field the old mirror lacked: written by C (sms = 0: unsplit), read back through ctypes
    q = h.GemmP(m=64, n=4096, k=4096, lda=4096, ldb=4096, ldc=4096, splits=7)
    h.geometry("gemm", q, 2)
    assert q.splits == 1 and ctypes.sizeof(q) == lib.sz_gemm()
