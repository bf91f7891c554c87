"""Packages import only downward (hipart < kernels, calib < export < edge; kernels and calib never import each
other) and no module import cycles. Imports are read with ast, function-local ones included: a lazy import is
still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"hipart": 0, "kernels": 1, "calib": 1, "export": 2, "edge": 3}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in RANK:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _targets(mod: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Dotted names an import statement may refer to (`from a import b` may import module a.b)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = mod.split(".")
        keep = len(base) - node.level + (1 if path.name == "__init__.py" else 0)
        stem = ".".join(base[:keep] + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    return [stem] + [f"{stem}.{a.name}" for a in node.names]


def _graph() -> tuple[dict[str, Path], dict[str, set[str]]]:
    mods = _modules()
    edges: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in _targets(mod, path, node):
                    while t and t not in mods:  # a name inside a module -> that module
                        t = t.rpartition(".")[0]
                    if t and t != mod:
                        deps.add(t)
        edges[mod] = deps
    return mods, edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_packages_import_only_downward():
    _, edges = _graph()
    bad = []
    for mod, deps in sorted(edges.items()):
        for dep in sorted(deps):
            a, b = mod.split(".")[0], dep.split(".")[0]
            if a != b and RANK[b] >= RANK[a]:
                bad.append(f"{mod} -> {dep}")
    assert not bad, "upward (or sideways) imports:\n" + "\n".join(bad)


def test_no_module_import_cycles():
    mods, edges = _graph()
    # a package __init__ re-exporting its submodules is not a cycle by itself; two real modules in one are
    cycles = [c for c in _cycles(edges) if sum(mods[m].name != "__init__.py" for m in c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_check_sees_imports():
    """The graph is not vacuous: known downward edges (a function-local one included) are found."""
    _, edges = _graph()
    assert "hipart.atomic_write" in edges["export.onnx_export"]
    assert "export.temporal_onnx" in edges["export.temporal_cli"]  # imported inside a function
    assert "edge.detectors.blazepose" in edges["edge.detectors"]
    cyc = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(cyc) == [["a", "b", "c"]]
