"""The package's modules import each other without cycles, and every one of them imports."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mothbrain

PACKAGE = Path(mothbrain.__file__).parent


def module_names() -> list[str]:
    names = []
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def imports_of(module: str, known: set[str], top_level_only: bool) -> set[str]:
    """The mothbrain modules `module` imports (at its top level, or anywhere in it)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ("/__init__.py" if module in PACKAGES else ".py"))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != module)
    if not top_level_only:  # a package may import its own modules on demand (sources' reader registry)
        found = {t for t in found if not t.startswith(module + ".")}
    return found


PACKAGES = {n for n in module_names() if (PACKAGE.parent / n.replace(".", "/") / "__init__.py").is_file()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("top_level_only", [True, False], ids=["at-import-time", "including-deferred-imports"])
def test_no_import_cycles(top_level_only):
    known = set(module_names())
    graph = {m: imports_of(m, known, top_level_only) for m in known}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports():
    for name in module_names():
        importlib.import_module(name)


def test_importing_the_package_has_no_side_effects():
    code = "import os; before = dict(os.environ); import mothbrain, mothbrain.cli; print(before == dict(os.environ))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "True"
