"""The outputs the docs show are the outputs the code prints: each Python block in
README.md and docs/*.md that is followed by "prints" and an output block runs in a
fresh process (on the CPU) and must print exactly that. GPU blocks (torch, "cuda")
are left to tests/test_cuda.py."""
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATTERN = re.compile(r"^```python\n(?P<code>(?:(?!```).)*?)^```\n\s*prints:?\s*\n\s*^```\w*\n(?P<out>.*?)^```", re.S | re.M)


def _examples():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for m in PATTERN.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            if re.search(r"\bimport torch\b|[\"']cuda|[\"']hip", m["code"]):
                continue
            yield pytest.param(m["code"], m["out"], id=f"{path.relative_to(ROOT)}:{line}")


EXAMPLES = list(_examples())


def test_the_docs_have_checked_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("code, expected", EXAMPLES)
def test_documented_output(tmp_path, code, expected):
    # A fresh cache folder, as a new user has: measured load costs in the user
    # cache change which kernel the pask policy loads first (and so reuses).
    env = dict(os.environ, PASKDNN_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PASKDNN_HINTS", None)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected
