"""The layers the design names, checked on the source: no import cycles among project modules (imports inside
functions included), the engine knows none of its adapters, and no private member of an Engine is used outside
engine/engine.py."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Top-level folders and the package each installs as (pyproject.toml's package-dir).
PACKAGES = {"codefill": "codefill", "engine": "codefill.engine", "lsp": "codefill.lsp", "cli": "codefill.cli",
            "quantize": "codefill.quantize", "eval": "codefill.eval"}
ADAPTERS = ("typer", "click", "rich", "pygls", "lsprotocol", "codefill.lsp", "codefill.cli", "codefill.eval",
            "codefill.quantize")


def _modules() -> dict[str, str]:
    """Module name → file, for every project module."""
    out = {}
    for folder, package in PACKAGES.items():
        base = os.path.join(ROOT, folder)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "data")]
            rel = os.path.relpath(dirpath, base)
            prefix = package if rel == "." else package + "." + rel.replace(os.sep, ".")
            for f in filenames:
                if f.endswith(".py"):
                    name = prefix if f == "__init__.py" else f"{prefix}.{f[:-3]}"
                    out[name] = os.path.join(dirpath, f)
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str, path: str) -> set[str]:
    """Project modules and third-party top-level names that `name` imports, at any depth, except under
    `if TYPE_CHECKING:` (which never runs)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    is_pkg = path.endswith("__init__.py")
    here = name if is_pkg else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = here.rsplit(".", child.level - 1)[0] if child.level > 1 else here
                    mod = f"{base}.{child.module}" if child.module else base
                else:
                    mod = child.module or ""
                subs = [f"{mod}.{a.name}" for a in child.names if f"{mod}.{a.name}" in MODULES]
                found.update(subs)  # `from . import hardware` imports the module, its package only as a parent
                if len(subs) < len(child.names):
                    found.add(mod)
            visit(child)

    visit(tree)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_the_graph_sees_nested_imports():
    # cli commands import the quantizer inside the command function (startup time): the scan must see it
    assert "codefill.quantize.pipeline" in GRAPH["codefill.cli.quantize_cmd"]
    assert len(MODULES) > 60


def test_no_import_cycles_among_project_modules():
    edges = {m: {d for d in deps if d in MODULES and d != m} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def dfs(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                dfs(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("codefill.engine")))
def test_the_engine_knows_no_adapter(module):
    bad = sorted(d for d in GRAPH[module] if any(d == a or d.startswith(a + ".") for a in ADAPTERS))
    assert not bad, f"{module} imports {bad}"


def _private_engine_uses(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
            continue
        v = node.value
        owner = v.id if isinstance(v, ast.Name) else (v.attr if isinstance(v, ast.Attribute) else None)
        if owner in ("engine", "eng", "_engine"):
            out.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: {owner}.{node.attr}")
    return out


def test_no_private_engine_member_is_used_outside_the_engine():
    files = [p for m, p in MODULES.items() if m != "codefill.engine.engine"]
    for extra in ("bench", "tests"):
        for dirpath, _dirs, filenames in os.walk(os.path.join(ROOT, extra)):
            files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
    uses = [u for p in files for u in _private_engine_uses(p)]
    assert not uses, "\n".join(uses)
