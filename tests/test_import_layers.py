"""The package's module-level imports form no cycle, and the lower layers never import the upper ones.

Read from the source (ast), so an import that would only run later, inside a function, does not count:
those are the deliberate lazy imports of optional or heavy packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

from capfleet import plugins

SRC = Path(__file__).resolve().parents[1] / "src"
LOWER = ("capfleet.models", "capfleet.modeling", "capfleet.io")  # training builds on these, never the reverse


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                # `from package import submodule` imports the submodule, not the package's own names
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def _submodule_or(base: str, name: str, modules: dict) -> str:
    return f"{base}.{name}" if f"{base}.{name}" in modules else base


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    assert _cycles(_module_graph()) == []


def test_lower_layers_do_not_import_upper_ones():
    graph = _module_graph()
    plugin_modules = {module for kind in plugins.KINDS for module in plugins._MODULES[kind].values()}
    upward = {
        (module, target)
        for module, targets in graph.items()
        for target in targets
        if (module in plugin_modules and target in ("capfleet.config", "capfleet.cli"))
        or (
            module.startswith(("capfleet.models", "capfleet.modeling", "capfleet.io"))
            and target.startswith("capfleet.train")
        )
        or (module.startswith(("capfleet.io", "capfleet.formats")) and target.startswith("capfleet.runners"))
    }
    assert upward == set()


def test_the_check_sees_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
