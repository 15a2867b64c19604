"""The cffi cdef, read from paskdnn.h: the C header is the one source of truth.

Everything between PASK_CDEF_BEGIN and PASK_CDEF_END, minus comments,
preprocessor lines and the PASK_API macro, is plain C that cffi's parser reads.
"""
from __future__ import annotations

import re

_BEGIN = "/* PASK_CDEF_BEGIN */"
_END = "/* PASK_CDEF_END */"


def cdef_from_header(text: str) -> str:
    body = text[text.index(_BEGIN) + len(_BEGIN):text.index(_END)]
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return "\n".join(lines).replace("PASK_API ", "") + "\n"
