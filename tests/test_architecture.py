"""Structure rules checked on the source itself: no import cycles, no process-wide tuning
on import or construction."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import whyrec

PACKAGE = Path(whyrec.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of import nodes under `if TYPE_CHECKING:` (never executed, so no cycle)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def import_graph() -> nx.DiGraph:
    """Every whyrec module → every whyrec module it imports, at top level or inside a
    function alike (a lazy import is still a dependency), packages' `__init__` included."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skipped = type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                graph.add_edges_from((name, t) for t in imported(target, name) if t in modules)
    return graph


def imported(target: str, importer: str) -> list[str]:
    """What importing `target` from `importer` runs: the module and every package above
    it, except the importer's own packages (they are already initialised by then)."""
    parts = target.split(".")
    chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return [module for module in chain if module not in own]


def test_the_import_graph_is_complete_enough_to_mean_something():
    graph = import_graph()
    assert graph.number_of_nodes() > 100
    assert graph.has_edge("whyrec.engine", "whyrec.ranking")
    assert graph.has_edge("whyrec.data.loaders", "whyrec.data.chunked")  # a lazy import


def test_there_are_no_import_cycles():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == []


def test_building_a_service_leaves_the_garbage_collector_alone():
    """Process-wide GC tuning belongs to server start-up, not to library constructors."""
    source = (PACKAGE / "serve" / "service.py").read_text()
    assert "gc.freeze" not in source and "gc.set_threshold" not in source
