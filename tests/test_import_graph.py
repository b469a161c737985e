"""The import graph of `trl_rere` has no cycles (DESIGN.md: imports run downward only).

Every import counts, also one inside a function: a deferred import is how a circle is usually hidden, and it is still
a circle (two modules that need each other). Importing `trl_rere.a.b` runs `trl_rere/a/__init__.py` first, so a
module depends on every package above what it imports (but those it lies in itself, which are already being
imported), except the top-level `trl_rere`, the user API, which nothing inside the library imports.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trl_rere


ROOT = Path(trl_rere.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ("trl_rere",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """`{module: modules it imports}` over trl_rere's own modules, with the packages each import runs."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                # `from pkg import sub` imports the submodule when `sub` is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                parts = target.split(".")
                for k in range(2, len(parts) + 1):  # the packages on the way, then the module
                    name = ".".join(parts[:k])
                    # a package the importing module lies in is already being imported: no edge to it
                    if name in modules and name != module and not module.startswith(name + "."):
                        graph[module].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_library_does_not_import_its_top_level_package():
    importers = sorted(m for m, deps in import_graph().items() if "trl_rere" in deps)
    assert not importers, f"these modules import the top-level trl_rere (the user API): {importers}"


def test_trl_rere_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", ["trl_rere", "trl_rere.data"])
def test_the_packages_list_what_they_import_lazily(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(module._MODULE_OF)
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_preparing_raw_data_loads_neither_torch_nor_datasets():
    code = "import sys, trl_rere.data.prepare; print(sorted({'torch', 'datasets', 'trl'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"
