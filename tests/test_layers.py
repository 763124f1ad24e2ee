"""The package's folders are its layers (docs/design.md): the core imports no I/O library and
nothing outside the core, and no module imports another in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "s3proxy"


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = found
    return graph


def test_core_imports_only_the_core_and_no_io_library() -> None:
    graph = _imports()
    core = {m: deps for m, deps in graph.items() if m.startswith("s3proxy.core")}
    assert len(core) >= 9
    for module, deps in core.items():
        for dep in deps:
            root = dep.split(".")[0]
            assert root not in {"aiohttp", "hvac", "botocore", "boto3", "requests"}, (module, dep)
            if root == "s3proxy":
                assert dep.startswith("s3proxy.core"), (module, dep)


def test_no_import_cycles() -> None:
    imports = _imports()
    graph = {m: {d for d in deps if d in imports} for m, deps in imports.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(
                "import cycle: " + " -> ".join([*path[path.index(module) :], module])
            )
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
