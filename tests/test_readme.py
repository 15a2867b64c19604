"""The README's code as a new user copies it: its C block is a complete program that
compiles against libpaskdnn through pkg-config (with the README's own commands) and runs."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(lang: str):
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), re.S | re.M)


@pytest.mark.skipif(shutil.which("pkg-config") is None or shutil.which("cc") is None,
                    reason="needs pkg-config and a C compiler")
def test_readme_c_program_compiles_and_runs(tmp_path):
    (c_source,) = _blocks("c")
    (tmp_path / "conv.c").write_text(c_source)
    pc_dir = subprocess.run([sys.executable, "-m", "paskdnn", "config", "--pkgconfig-dir"], check=True,
                            capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    env = dict(os.environ, PKG_CONFIG_PATH=pc_dir)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "paskdnn"], env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    # the README's build command, with warnings as errors
    build = [b for b in _blocks("sh") if "conv.c" in b]
    assert build and "PKG_CONFIG_PATH=$(python3 -m paskdnn config --pkgconfig-dir)" in build[0]
    assert "cc -std=c11 conv.c -o conv $(pkg-config --cflags --libs paskdnn) -lm && ./conv" in build[0]
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "conv.c", "-o", "conv", *flags, "-lm"],
                   check=True, cwd=tmp_path)
    run = subprocess.run([str(tmp_path / "conv")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    m = re.fullmatch(r"y\[0, 5, 10, 20\] = (\S+) \(expected (\S+)\)\n", run.stdout)
    assert m and abs(float(m[1]) - float(m[2])) <= 1e-3 * (1 + abs(float(m[2]))), run.stdout


def test_readme_names_files_that_exist():
    root = README.parent
    text = README.read_text()
    for name in re.findall(r"`((?:examples|tests|docs|bench|include|tools)/[\w./-]+)`", text):
        assert (root / name).exists(), name
    assert "engine.c " not in text and "engine.c`" not in text
