"""The Policy (src/core/policy.cpp) is a pure function: its decisions are
checked from a table of cases in C++ (tests/c/test_policy.cpp), with no
clocks, threads or sleeps."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("c++") is None or not (ROOT / "src" / "core" / "policy.cpp").exists(),
                    reason="needs a C++ compiler and the source tree")
def test_policy_decisions_follow_the_table(tmp_path):
    exe = tmp_path / "test_policy"
    subprocess.run(["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(ROOT / "src" / "core"), "-I",
                    str(ROOT / "include"), str(ROOT / "tests" / "c" / "test_policy.cpp"),
                    str(ROOT / "src" / "core" / "policy.cpp"), "-o", str(exe)], check=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failed" in run.stdout
