"""Check the import graph of repclass: no cycle between modules at import time (exit status 1 and
the cycle when there is one). Between stages (the subpackages and top-level modules), counting the
lazy imports inside functions too, a cycle is a back-arrow in the layout: printed, and an error
only with --strict. --graph prints what each stage imports.

Usage: python scripts/check_imports.py [--strict] [--graph]
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "repclass"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(imported at import time, imported anywhere) repclass modules of one file; TYPE_CHECKING blocks skipped."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    eager: set[str] = set()
    every: set[str] = set()

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
            for name in names:
                if name.split(".")[0] == "repclass":
                    (every if inner else eager).add(name)
                    every.add(name)
            visit(child, inner)

    visit(tree, False)
    return eager, every


def stage(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (found := walk(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def main() -> int:
    files = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    modules_graph: dict[str, set[str]] = {}
    stages_graph: dict[str, set[str]] = {}
    for name, path in files.items():
        eager, every = imports(path)
        modules_graph[name] = {m for m in eager if m in files and m != name and not name.startswith(m + ".")}
        stages_graph.setdefault(stage(name), set()).update(
            stage(m) for m in every if m in files and stage(m) not in (stage(name), "repclass"))
    failed = 0
    cycle = find_cycle(modules_graph)
    if cycle:
        print(f"import cycle among modules (at import time): {' -> '.join(cycle)}")
        failed = 1
    cycle = find_cycle(stages_graph)
    if cycle:
        print(f"back-arrow between stages (lazy imports included): {' -> '.join(cycle)}")
        failed = failed or int("--strict" in sys.argv)
    if "--graph" in sys.argv:
        for name in sorted(stages_graph):
            print(f"{name}: {', '.join(sorted(stages_graph[name])) or '-'}")
    if not failed:
        print(f"no import cycle among the {len(files)} modules")
    return failed


if __name__ == "__main__":
    sys.exit(main())
