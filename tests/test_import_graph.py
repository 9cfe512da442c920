"""The arrows of the import graph run one way: no circle among module-level imports, the core
(t3edge outside its command layer) never imports a wing, and backends never read the registry."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("t3edge", "synth", "tui", "converters", "tinymodels")
WINGS = ("synth", "tui", "converters", "tinymodels")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The project modules `path` imports (module-level statements only, if asked; imports under
    `if TYPE_CHECKING:` are not imports at run time)."""
    tree = ast.parse(path.read_text())
    nodes: list[ast.AST] = []
    if top_level_only:
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            nodes.extend(ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node])
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def test_no_circle_among_module_level_imports() -> None:
    mods = modules()
    graph = {name: {m for m in imports(path, top_level_only=True) if m in mods and m != name}
             for name, path in mods.items()}
    # a package's __init__ importing its own submodules is how packages are built, not an arrow back
    for name in graph:
        graph[name] = {m for m in graph[name] if not (m.startswith(name + ".") and mods[name].name == "__init__.py")}
    seen: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name)
    assert circles == []


def test_the_core_never_imports_a_wing() -> None:
    offenders = {name: sorted(m for m in imports(path, top_level_only=False) if m.split(".")[0] in WINGS)
                 for name, path in modules().items()
                 if name.startswith("t3edge") and not name.startswith("t3edge.cli")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_backends_never_read_the_registry() -> None:
    offenders = {name: sorted(m for m in imports(path, top_level_only=False)
                              if m.startswith(("t3edge.models", "t3edge.loading")))
                 for name, path in modules().items() if name.startswith("t3edge.backends")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_file_points_at_documents_outside_the_repository() -> None:
    names = ("SPEC" + ".md", "DESIGN" + ".md")
    hits = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and p.suffix in (".py", ".md", ".toml", ".txt", ".tcss", ".cfg")
            and not any(part.startswith(".") or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)
            and any(n in p.read_text(errors="replace") for n in names)]
    assert hits == []
