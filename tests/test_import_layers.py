"""The engine's modules form layers: no import, at the top of a module or inside a function, leads back to the
module it starts from. Read from the source (ast), so a lazy import inside a function counts as much as one at
the top; and a few modules are imported alone in a fresh interpreter to show what they really load."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "dgnam_engine"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The engine modules `name` imports anywhere in its source (relative and absolute forms)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod in known and not name.startswith(mod + "."):  # its own package ran first anyway
                out.add(mod)
            for a in node.names:  # `from . import runner` imports a module, not a name
                if f"{mod}.{a.name}" in known:
                    out.add(f"{mod}.{a.name}")
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = engine_modules()
    known = set(mods)
    return {n: imports_of(n, p, known) for n, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_engine_module_imports_back_up():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_only_the_entry_points_import_the_command_line():
    graph = import_graph()
    importers = sorted(n for n, deps in graph.items() if "dgnam_engine.cli" in deps)
    assert importers == ["dgnam_engine.__main__"], importers


def test_the_store_knows_nothing_above_it():
    """The store keeps results; it neither runs, resolves nor knows the shipped atlases or the command line."""
    deps = import_graph()["dgnam_engine.store"]
    above = {"dgnam_engine.runner", "dgnam_engine.atlas", "dgnam_engine.cli", "dgnam_engine.targets",
             "dgnam_engine.priors", "dgnam_engine.accel", "dgnam_engine.weights"}
    assert not deps & above, deps & above


def _loaded_by(module: str) -> set[str]:
    code = (f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('dgnam_engine') "
            "or m == 'torch'))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split())


def test_errors_and_the_store_load_alone_without_torch_or_the_cli():
    assert "torch" not in _loaded_by("dgnam_engine.errors")
    store = _loaded_by("dgnam_engine.store")
    assert not {"torch", "dgnam_engine.cli", "dgnam_engine.atlas", "dgnam_engine.runner"} & store, store


def test_browse_first_screen_draws_without_torch():
    """A fresh server's first page draws the shipped atlas's grid from these alone, before torch and the network
    load (pages/browse.py imports the rest after the grid)."""
    loaded = _loaded_by("app.layout, app.state, app.atlas_view, app.pictures, app.names, app.terms, app.links")
    assert "torch" not in loaded and "dgnam_engine.runner" not in loaded, loaded
