"""Writes the prebuilt cffi module: paskdnn.h's cdef, parsed once at build time.

    python gen_cffi.py paskdnn.h _header.py OUTPUT.py

Parsing the cdef with cffi's pycparser at run time cost every process about
75 ms before its first call (2-core Xeon, measured): most of a fresh process's
library set-up. cffi's out-of-line ABI mode keeps the parsed declarations as
compact tables in a plain Python module, which loads in about a millisecond.
The cdef is still read from the header, by the same function the run-time
fallback uses (paskdnn/_header.py); the module keeps that cdef's text, and
paskdnn._lib uses the module only for a header whose cdef is that text (a
library from another build parses its own header, as before).

The module holds no path: only the declarations' tables.
"""
import contextlib
import importlib.util
import io
import os
import sys
from pathlib import Path


def main() -> None:
    header, header_py, out = (Path(p) for p in sys.argv[1:4])
    spec = importlib.util.spec_from_file_location("_pask_header", header_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cdef = mod.cdef_from_header(header.read_text(encoding="utf-8"))

    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source("paskdnn_cffi", None)  # None: ABI mode, nothing to compile
    tmp = out.with_name(out.name + ".tmp")
    with contextlib.redirect_stdout(io.StringIO()):  # cffi says "generating ..."
        ffi.emit_python_code(str(tmp))
    code = tmp.read_text(encoding="utf-8")
    tmp.write_text(code + "\n# the cdef these tables were made from (paskdnn/_header.py)\n"
                          f"CDEF = {cdef!r}\n", encoding="utf-8")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
