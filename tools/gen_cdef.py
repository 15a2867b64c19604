"""Writes paskdnn/_cdef.py: the cffi cdef taken from include/paskdnn.h.

The header is the one source of truth: everything between PASK_CDEF_BEGIN and
PASK_CDEF_END, minus preprocessor lines and the PASK_API macro, is plain C that
cffi's parser reads.
"""
import re
import sys


def cdef_from_header(text: str) -> str:
    start = text.index("/* PASK_CDEF_BEGIN */") + len("/* PASK_CDEF_BEGIN */")
    end = text.index("/* PASK_CDEF_END */")
    body = text[start:end]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("#")]
    body = "\n".join(lines).replace("PASK_API ", "")
    return re.sub(r"\n\s*\n+", "\n", body).strip() + "\n"


def main() -> None:
    header, out = sys.argv[1], sys.argv[2]
    with open(header, encoding="utf-8") as f:
        cdef = cdef_from_header(f.read())
    with open(out, "w", encoding="utf-8") as f:
        f.write('"""Generated from include/paskdnn.h by tools/gen_cdef.py; do not edit."""\n')
        f.write("CDEF = r'''\n" + cdef + "'''\n")


if __name__ == "__main__":
    main()
