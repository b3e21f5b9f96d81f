"""The module map stays a map: no import cycle between the library's modules (imports inside functions count too)."""

import ast
from pathlib import Path

import pytest

import audioflamingo_lab

PACKAGE = Path(audioflamingo_lab.__file__).parent
NAME = "audioflamingo_lab"


def imported_modules(path: Path) -> set[str]:
    "The library modules a file imports, anywhere in it (`from .x import`, `from audioflamingo_lab.x import`, ...)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                base = f"{NAME}.{base}" if base else NAME
            if base == NAME:  # `from . import x` / `from audioflamingo_lab import x`
                out |= {f"{NAME}.{a.name}" for a in node.names}
            elif base.startswith(NAME + "."):
                out.add(base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(NAME + ".")}
    return {m.split(".")[1] for m in out if len(m.split(".")) > 1}


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "_modidx")}
    return {m: imported_modules(PACKAGE / f"{m}.py") & modules - {m} for m in sorted(modules)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One cycle as a path [a, b, ..., a], or None (depth-first search with colours)."
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imports_are_read_from_the_files():
    graph = import_graph()
    assert "flamingo" in graph["training"] or "flamingo" in graph.get("checkpoint", set())
    assert "cli" not in graph["demo"]  # the demo trains through run, not through the command line


def test_no_import_cycle_between_library_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_over_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py") if p.stem != "_modidx"}
    assert max(sizes.values()) <= 400, {name: n for name, n in sizes.items() if n > 400}


def test_the_top_level_api_is_the_modules_own_objects():
    import importlib

    for name, module in audioflamingo_lab.API.items():
        assert getattr(audioflamingo_lab, name) is getattr(importlib.import_module(f"{NAME}.{module}"), name), name
    assert set(audioflamingo_lab.API) <= set(dir(audioflamingo_lab))
    with pytest.raises(AttributeError, match="no_such_name"):
        audioflamingo_lab.no_such_name


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, audioflamingo_lab; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
