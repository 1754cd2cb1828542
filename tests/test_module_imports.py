"""The panel's modules import each other at load time without a cycle, so any of them can be imported first."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "intercity"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_time_imports() -> dict[str, set[str]]:
    """Each module's `from intercity... import ...` statements at its top level (not those inside functions)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "intercity":
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    imported.add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name in modules)
        graph[name] = {other for other in imported if other in modules and other != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    on_path: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        on_path.append(module)
        for other in sorted(graph[module]):
            if other in on_path:
                return on_path[on_path.index(other):] + [other]
            if other not in done and (found := visit(other)):
                return found
        on_path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (found := visit(module)):
            return found
    return None


def test_the_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_no_module_imports_itself_through_others_at_load_time():
    graph = load_time_imports()
    assert "intercity.services.operations" in graph and graph["intercity.services.operations"]
    assert find_cycle(graph) is None
