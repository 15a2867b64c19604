"""The build: the version is written once (project() in meson.build) and every
place it shows agrees; the installed package holds no build-tree path.

The last check reads an installed distribution's files; an editable install
holds its build tree's path by design (meson-python's import hook), so there it
is skipped. Run it against a wheel install (`pip install .`, as .ci/run does).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import paskdnn
from paskdnn import _lib

ROOT = Path(__file__).resolve().parent.parent


def _project_version() -> str:
    text = (ROOT / "meson.build").read_text(encoding="utf-8")
    m = re.search(r"\bproject\s*\((?:[^()]|\([^()]*\))*?\bversion\s*:\s*'([^']+)'", text, re.S)
    assert m, "meson.build's project() has no version"
    return m.group(1)


def _header_macros() -> dict:
    include = _lib.library_dir() / "include"
    assert '#include "paskdnn_version.h"' in (include / "paskdnn.h").read_text(encoding="utf-8")
    text = (include / "paskdnn_version.h").read_text(encoding="utf-8")
    return dict(re.findall(r"^#define (PASK_VERSION_\w+) (\S+)$", text, re.M))


def _editable() -> bool:
    try:
        direct = metadata.distribution("paskdnn").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return False
    return bool(direct) and json.loads(direct).get("dir_info", {}).get("editable", False)


def test_version_agrees_everywhere():
    version = _project_version()
    assert paskdnn.__version__ == version
    assert paskdnn.version() == version  # pask_version_string()
    assert metadata.version("paskdnn") == version
    macros = _header_macros()
    major, minor, patch = version.split(".")
    assert macros == {"PASK_VERSION_MAJOR": major, "PASK_VERSION_MINOR": minor, "PASK_VERSION_PATCH": patch,
                      "PASK_VERSION_STRING": f'"{version}"'}


def test_version_is_written_only_in_meson_build():
    version = _project_version()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r"^dynamic\s*=\s*\[[^\]]*\"version\"", pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject, re.M)
    for rel in ("pyproject.toml", "include/paskdnn.h", "include/paskdnn_version.h.in", "paskdnn/__init__.py",
                "paskdnn/_version.py.in", "src/core/api.cpp", "src/core/kernel_store.cpp"):
        assert version not in (ROOT / rel).read_text(encoding="utf-8"), rel
    assert not re.search(r"#define PASK_VERSION_(MAJOR|MINOR|PATCH) \d", (ROOT / "include/paskdnn.h").read_text())


@pytest.mark.skipif(shutil.which("pkg-config") is None or shutil.which("cc") is None,
                    reason="needs pkg-config and a C compiler")
def test_pkg_config_and_the_compiled_header_agree(tmp_path):
    version = _project_version()
    pcdir = subprocess.run([sys.executable, "-m", "paskdnn", "config", "--pkgconfig-dir"], check=True, cwd=tmp_path,
                           capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, PKG_CONFIG_PATH=pcdir)
    pc = lambda *a: subprocess.run(["pkg-config", *a, "paskdnn"], env=env, check=True, capture_output=True,
                                   text=True).stdout.strip()
    assert pc("--modversion") == version
    src = tmp_path / "v.c"
    src.write_text('#include <stdio.h>\n#include <string.h>\n#include "paskdnn.h"\n'
                   'int main(void) {\n'
                   '  printf("%d.%d.%d %s\\n", PASK_VERSION_MAJOR, PASK_VERSION_MINOR, PASK_VERSION_PATCH,\n'
                   '         PASK_VERSION_STRING);\n'
                   '  return strcmp(PASK_VERSION_STRING, pask_version_string()) != 0;\n'
                   '}\n')
    exe = tmp_path / "v"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", str(src), "-o", str(exe), *pc("--cflags", "--libs").split()],
                   check=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split() == [version, version]


def test_no_build_info_module():
    with pytest.raises(ImportError):
        __import__("paskdnn._build_info")


@pytest.mark.skipif(_editable(), reason="an editable install points at its build tree by design; "
                                        "install a wheel (pip install .) to check the installed files")
def test_installed_package_holds_no_build_tree_path():
    try:
        dist = metadata.distribution("paskdnn")
    except metadata.PackageNotFoundError:
        pytest.skip("paskdnn is not installed")
    files = [Path(str(dist.locate_file(f))) for f in dist.files or []]
    package = [f for f in files if "paskdnn" in f.parts and f.is_file() and "__pycache__" not in f.parts]
    assert any(f.name == "libpaskdnn.so" for f in package) and any(f.name == "paskdnn.pc" for f in package)
    # meson-python builds a wheel in <source>/.mesonpy-XXXX; an editable install in <source>/build
    needles = [str(ROOT).encode(), b".mesonpy-", b"meson-private"]
    found = [(str(f), n.decode()) for f in package for n in needles if n in f.read_bytes()]
    assert not found, found
    assert not [f for f in package if f.name.startswith("_build_info")]
    pc = next(f for f in package if f.name == "paskdnn.pc").read_text()
    assert "pask_libdir=${pcfiledir}/.." in pc and "-lpaskdnn" in pc


@pytest.mark.skipif(shutil.which("meson") is None or shutil.which("ninja") is None, reason="meson and ninja not found")
def test_cpu_isas_builds_the_cpu_targets_named_and_requires_generic(tmp_path):
    """-Dcpu_isas (tools/sanitize.sh: only the targets the machine runs) configures
    CPU code objects for the targets named and no others; a list without generic,
    the target every processor runs, is refused at setup."""
    def setup(name, isas):
        return subprocess.run(["meson", "setup", str(tmp_path / name), f"-Dcpu_isas={isas}",
                               "-Dprebuilt_cubins=disabled"], cwd=ROOT, capture_output=True, text=True)
    ok = setup("two", "generic,avx2")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    targets = subprocess.run(["ninja", "-C", str(tmp_path / "two"), "-t", "targets", "all"], capture_output=True,
                             text=True, check=True).stdout
    built = set(re.findall(r"^src/kernels/pask_cpu_\w+\.(x86_64-\w+)\.so:", targets, re.M))
    if built:  # x86-64 hosts (elsewhere the CPU objects have other target names)
        assert built == {"x86_64-generic", "x86_64-avx2"}, built
    bad = setup("no-generic", "avx2,avx512")
    assert bad.returncode != 0 and "must include generic" in bad.stdout + bad.stderr, bad.stdout[-2000:]


def test_every_module_of_the_package_is_installed():
    # the wheel holds what paskdnn/meson.build lists, not what the folder holds: a
    # module left out imports from a source checkout (the tests) and fails installed
    listed = set(re.findall(r"'([^']+)'", (ROOT / "paskdnn" / "meson.build").read_text(encoding="utf-8")
                            .split("py.install_sources(", 1)[1].split(")", 1)[0]))
    modules = {p.name for p in (ROOT / "paskdnn").glob("*.py")}
    assert modules <= listed, f"not installed: {sorted(modules - listed)}"
