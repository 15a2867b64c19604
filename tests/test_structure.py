"""The core's shape (issue 14), read from the sources: no file of src/core/
includes a backend, a provider or the set-up module (those register through
interfaces the core defines), and no function in src/core/ runs past 80
lines. Comments and string literals are blanked before braces are matched."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "src" / "core"
MAX_LINES = 80
_CONTROL = re.compile(r"^(if|for|while|switch|catch|do|else|try)\b|\b(if|for|while|switch|catch)\s*\(.*\)\s*$")
_SIGNATURE_END = re.compile(r"\)\s*(const|noexcept|override|final|mutable|->\s*[\w:<>,\s*&]+|\s)*$")


def _core_files() -> List[Path]:
    files = sorted(CORE.glob("*.cpp")) + sorted(CORE.glob("*.hpp"))
    assert len(files) > 10, CORE
    return files


def _blank(src: str) -> str:
    """src with comments, string and character literals (raw strings too)
    blanked, newlines kept, so that braces and line numbers are the code's."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2) + 2
            out.append("\n" * src.count("\n", i, j))
            i = j
            continue
        starts_word = i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")
        raw = re.match(r'R"([^(\s]*)\(', src[i:i + 40]) if c == "R" and starts_word else None
        if raw:
            end = ")" + raw.group(1) + '"'
            j = src.find(end, i + raw.end()) + len(end)
            out.append('""' + "\n" * src.count("\n", i, j))
            i = j
            continue
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def long_functions(text: str, limit: int = MAX_LINES) -> List[Tuple[int, int, str]]:
    """(lines, first line, signature) of each function body (lambdas included)
    in C++ source text longer than limit lines."""
    s = _blank(text)
    found, stack, line = [], [], 1
    for i, c in enumerate(s):
        if c == "\n":
            line += 1
        elif c == "{":
            k = i - 1
            while k >= 0 and s[k] not in ";{}":
                k -= 1
            head = " ".join(s[k + 1:i].split())
            stack.append((bool(_SIGNATURE_END.search(head)) and not _CONTROL.search(head), line, head[-90:]))
        elif c == "}" and stack:
            is_function, start, head = stack.pop()
            if is_function and line - start + 1 > limit:
                found.append((line - start + 1, start, head))
    return found


def test_the_checker_finds_a_long_function_and_ignores_braces_in_text():
    body = "\n".join(f"    x += {i};  // {{ not a brace" for i in range(MAX_LINES))
    text = (f'int f(int x) {{\n{body}\n    return x;\n}}\n'
            f'const char *s = "{{{{";\nint g() {{ if (1) {{ return 2; }} }}\n')
    assert [(n, start) for n, start, _ in long_functions(text)] == [(MAX_LINES + 3, 1)]
    assert long_functions(text, MAX_LINES + 3) == []


def test_no_function_in_the_core_runs_past_80_lines():
    over = [f"{p.relative_to(ROOT)}:{start}: {n} lines: {head}"
            for p in _core_files() for n, start, head in long_functions(p.read_text(encoding="utf-8"))]
    assert over == []


def test_the_core_includes_no_backend_provider_or_set_up_file():
    local = {p.name for p in CORE.iterdir()}
    public = {p.name for p in (ROOT / "include").iterdir()} | {"paskdnn_version.h"}
    bad = []
    for p in _core_files():
        for n, text in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', text)
            if m and (("/" in m.group(1)) or m.group(1) not in local | public):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {text.strip()}")
    assert bad == []
