"""The package's modules import each other in no circle (issue 14): the import
graph of paskdnn/, read with ast from every import statement (module level and
inside functions), is acyclic."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "paskdnn"


def _modules() -> Dict[str, Path]:
    """Module name (as imported inside the package) -> its source."""
    found = {p.stem: p for p in PACKAGE.glob("*.py")}
    for p in PACKAGE.glob("*.py.in"):  # configured at build time (_build_info.py)
        found[p.name[:-len(".py.in")]] = p
    found["__init__"] = PACKAGE / "__init__.py"
    return found


def _edges(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """The package modules that `name` imports (the package itself is __init__)."""
    out: Set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "paskdnn":
                    out.add(parts[1] if len(parts) > 1 and parts[1] in modules else "__init__")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "paskdnn":
                    continue
                rest = parts[1:]
            else:
                assert node.level == 1, f"{name}: an import above the package"
                rest = (node.module or "").split(".") if node.module else []
            if rest:
                out.add(rest[0] if rest[0] in modules else "__init__")
            else:  # from . import a, b: submodules, else names of the package
                for alias in node.names:
                    out.add(alias.name if alias.name in modules else "__init__")
    out.discard(name)
    return out


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """A cycle of the graph as a list of names, or [] when it has none."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(n: str) -> List[str]:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return []


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def test_the_package_import_graph_is_acyclic():
    graph = import_graph()
    assert {"_arrays", "_context", "_spec", "functional", "graph"} <= set(graph)
    cycle = _cycle(graph)
    assert not cycle, "paskdnn modules import each other in a circle: " + " -> ".join(cycle)


def test_the_checker_finds_circles_including_function_level_imports(tmp_path):
    """The check itself: a function-level import that closes a loop is found."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import x\n")
    (tmp_path / "c.py").write_text("import paskdnn.a\n")
    modules = {p.stem: p for p in tmp_path.glob("*.py")}
    graph = {n: _edges(n, p, modules) for n, p in modules.items()}
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("import numpy\n")
    graph = {n: _edges(n, p, modules) for n, p in modules.items()}
    assert _cycle(graph) == []


def test_the_old_circle_is_gone():
    """_arrays -> _context -> functional -> _arrays was the circle of issue 14."""
    graph = import_graph()
    assert "_context" not in graph["_arrays"] and "functional" not in graph["_context"]
    assert graph["_spec"] <= {"_arrays", "_lib", "_errors"}
