"""A C program that includes paskdnn.h, compiles and links through pkg-config
(the way a C/C++ engine would) and checks a convolution result."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _pkgconfig_dir(cwd) -> str:
    out = subprocess.run([sys.executable, "-m", "paskdnn", "config", "--pkgconfig-dir"], check=True, cwd=cwd,
                         capture_output=True, text=True)
    return out.stdout.strip()


def _build_and_run(tmp_path, compile_cmd, src, timeout=60):
    """Compiles src with compile_cmd plus pkg-config's flags for paskdnn (as an
    engine would), runs it and returns the finished process."""
    env = dict(os.environ, PKG_CONFIG_PATH=_pkgconfig_dir(tmp_path))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "paskdnn"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    exe = tmp_path / src.stem
    subprocess.run([*compile_cmd, "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe), *flags, "-lm"], check=True)
    return subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout)


NEEDS_CC = pytest.mark.skipif(shutil.which("pkg-config") is None or shutil.which("cc") is None,
                              reason="needs pkg-config and a C compiler")


@NEEDS_CC
def test_c_program_builds_with_pkg_config_and_computes_a_conv(tmp_path):
    run = _build_and_run(tmp_path, ["cc", "-std=c11"], HERE / "c" / "test_c_api.c")
    assert run.returncode == 0, run.stderr
    assert "passed" in run.stdout


@pytest.mark.skipif(shutil.which("pkg-config") is None or shutil.which("c++") is None,
                    reason="needs pkg-config and a C++ compiler")
def test_cpp_engine_example_builds_gives_hints_and_runs(tmp_path):
    run = _build_and_run(tmp_path, ["c++", "-std=c++17", "-O1"], HERE.parent / "examples" / "engine.cpp", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "engine OK" in run.stdout


@NEEDS_CC
def test_plans_example_builds_and_runs_as_documented(tmp_path):
    run = _build_and_run(tmp_path, ["cc", "-std=c11"], HERE.parent / "examples" / "plans.c")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 executions of one plan" in run.stdout and "3 calls, 1 hints matched" in run.stdout
