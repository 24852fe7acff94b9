"""No import cycle among receiver's modules (issue 12): each module's top-level imports, read with ast.

A module importing its own package's ``__init__`` is not counted (Python imports the package first
anyway); imports inside functions are deferred and not counted either.
"""

import ast
from pathlib import Path

RECEIVER = Path(__file__).resolve().parents[2] / "receiver"


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in RECEIVER.rglob("*.py"):
        parts = list(path.relative_to(RECEIVER.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, (path, package) in known.items():
        here = name if package else name.rpartition(".")[0]
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here.split(".")[:len(here.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                for end in range(1, len(parts) + 1):
                    imported = ".".join(parts[:end])
                    own_package = known.get(imported, (None, False))[1] and name.startswith(imported + ".")
                    if imported in known and imported != name and not own_package:
                        graph[name].add(imported)
    return graph


def cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path of imports from ``start`` back to itself, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        for imported in graph[name]:
            if imported == start:
                return path + [start]
            if imported not in seen:
                seen.add(imported)
                stack.append((imported, path + [imported]))
    return None


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "receiver.ledger.record" in graph["receiver.worker"] or "receiver.ledger.leases" in graph["receiver.worker"]
    assert "receiver.sources" in graph["receiver.ledger.erasure"]


def test_no_module_imports_itself_back():
    graph = import_graph()
    cycles = [cycle for name in sorted(graph) if (cycle := cycle_from(graph, name))]
    assert cycles == []
