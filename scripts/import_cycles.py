"""Import circles and long modules of the rendered project's `mlops` package, read from its source (AST).

    python scripts/import_cycles.py              print the circles and the modules over 300 lines
    python scripts/import_cycles.py --check      exit 1 when there is an import circle (a unit test runs this)
    python scripts/import_cycles.py --package DIR    another copy of the package (e.g. an older version)

An edge A -> B is any import of B in A: at import time, inside a function (a lazy import is a circle
all the same: it only runs later), or only for type checking (`if TYPE_CHECKING:`); each circle says
which kinds its edges are. Importing `pkg.mod` also runs `pkg/__init__.py`, so it is an edge to both.
A circle is a strongly connected component of that graph (Tarjan); one loop through it is printed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "{{cookiecutter.project_slug}}" / "src" / "mlops"
LONG = 300  # lines: "each module readable in one sitting"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module of the package ("mlops.cluster.state")."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if all(p.isidentifier() for p in parts):
            out[".".join(parts)] = path
    return out


def _kind(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    """'type' under `if TYPE_CHECKING:`, 'lazy' inside a function, else 'top'."""
    kind = "top"
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return "type"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = "lazy"
    return kind


def edges(known: dict[str, Path]) -> dict[str, dict[str, str]]:
    """module -> {imported mlops module: the kind of its first import ('top' wins over 'lazy' over 'type')}."""
    rank = {"top": 0, "lazy": 1, "type": 2}
    graph: dict[str, dict[str, str]] = {name: {} for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                    dotted = ".".join(parts[:i])
                    if dotted in known and dotted != name and not name.startswith(dotted + "."):
                        kind = _kind(node, parents)
                        old = graph[name].get(dotted)
                        if old is None or rank[kind] < rank[old]:
                            graph[name][dotted] = kind
    return graph


def circles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def loop(graph: dict[str, dict[str, str]], component: list[str]) -> list[str]:
    """One closed path through a component: start -> ... -> start (breadth-first, shortest)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                return paths[v] + [start]
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component


def long_modules(known: dict[str, Path]) -> list[tuple[str, int]]:
    return sorted(((n, len(p.read_text().splitlines())) for n, p in known.items()
                   if len(p.read_text().splitlines()) > LONG), key=lambda x: -x[1])  # fmt: skip


def main(check: bool, package: Path = PACKAGE) -> int:
    known = modules(package)
    graph = edges(known)
    found = circles(graph)
    print(f"{len(known)} modules, {sum(map(len, graph.values()))} import edges; {len(found)} import circle(s)")
    for component in found:
        path = loop(graph, component)
        steps = " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(path, path[1:], strict=False))
        print(f"  {len(component)} modules ({', '.join(component)}): {steps} -> {path[-1]}")
    longer = long_modules(known)
    print(f"{len(longer)} module(s) over {LONG} lines")
    for name, lines in longer:
        print(f"  {name}: {lines}")
    return 1 if check and found else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    where = Path(args[args.index("--package") + 1]) if "--package" in args else PACKAGE
    sys.exit(main("--check" in args, where))
