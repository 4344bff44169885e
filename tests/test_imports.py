"""No import cycles in xpnet, lazy ones (an import inside a function) included.

Two checks: the import graph read from the source with ``ast`` has no cycle, and every module imports
cleanly in a fresh interpreter when it is the first xpnet module to load (with ``xpnet/__init__.py``
skipped, since it would otherwise load everything in its own order first). A cycle of top-level imports
fails the second check in some order; a lazy one only the first.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import pytest

import xpnet

PACKAGE_DIR = os.path.dirname(os.path.abspath(xpnet.__file__))


def modules(package_dir: str) -> dict[str, str]:
    """``{dotted module name: file}`` for every ``.py`` file of the package (``pkg.sub`` for ``sub/__init__.py``)."""
    top = os.path.dirname(package_dir)
    found = {}
    for root, _, files in os.walk(package_dir):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                name = os.path.relpath(path, top)[:-3].replace(os.sep, ".")
                found[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def import_graph(package_dir: str) -> dict[str, set[str]]:
    """Each module's imports of the package's own modules: every import statement, wherever it is.

    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` itself (a
    name defined in ``pkg/__init__.py``, such as ``__version__``: that runs ``pkg/__init__.py``)."""
    mods = modules(package_dir)
    graph = {}
    for mod, path in mods.items():
        package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in mods)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    target = f"{source}.{alias.name}"
                    if target in mods:
                        edges.add(target)
                    elif source in mods:
                        edges.add(source)
        edges.discard(mod)
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph(PACKAGE_DIR)
    assert {"xpnet", "xpnet.io", "xpnet.model", "xpnet.layers.core"} <= set(graph)
    assert "xpnet.io" in graph["xpnet.model"]  # the graph is read, not empty
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_io_is_the_file_format_only():
    """io knows files, not models: it imports no other xpnet module but the version, the argument checks and
    the atomic writes, and those import nothing of xpnet."""
    graph = import_graph(PACKAGE_DIR)
    leaves = {"xpnet._version", "xpnet.arguments", "xpnet.atomicfile"}
    assert graph["xpnet.io"] <= leaves
    assert {m: graph[m] for m in leaves} == {m: set() for m in leaves}


# Import one module first, in a fresh interpreter. The parent package is set up by hand without running
# its __init__.py (which would import everything else in its own order), so the module under test really
# is the first to load and pulls in only what it imports itself.
_FIRST = textwrap.dedent("""
    import importlib, sys, types
    top, name, path = sys.argv[1:]
    sys.modules[top] = stub = types.ModuleType(top)
    stub.__path__ = [path]
    importlib.import_module(name)
""")


# (not xpnet.__main__: importing it runs the command)
@pytest.mark.parametrize("module", sorted(set(modules(PACKAGE_DIR)) - {"xpnet", "xpnet.__main__"}))
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    if module.startswith("xpnet.sklearn"):
        pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'xpnet[sklearn]')")
    # A module that imports a name from xpnet/__init__.py itself (cli: __version__) needs the package
    # loaded first; that is no cycle as long as the package does not import it (the graph test checks).
    script = f"import {module}" if "xpnet" in _loaded_with(module) else _FIRST
    done = subprocess.run([sys.executable, "-c", script, "xpnet", module, PACKAGE_DIR],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"importing {module} first fails:\n{done.stderr[-3000:]}"


_GRAPH: dict = {}


def _graph():
    if not _GRAPH:
        _GRAPH.update(import_graph(PACKAGE_DIR))
    return _GRAPH


def _loaded_with(module):
    """Every module that importing ``module`` loads (what it imports, transitively)."""
    seen, todo = set(), [module]
    while todo:
        for nxt in _graph()[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_package_imports_in_a_fresh_interpreter():
    done = subprocess.run([sys.executable, "-c", "import xpnet, xpnet.cli, xpnet.datasets; print(xpnet.__all__)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _package(tmp_path, files: dict) -> str:
    root = tmp_path / "pkgx"
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return str(root)


def test_the_checks_catch_a_planted_cycle(tmp_path):
    """The checker itself: a lazy cycle is seen in the graph, a top-level one also by importing first."""
    lazy = _package(tmp_path / "lazy", {"__init__.py": "", "a.py": "from . import b\n",
                                        "b.py": "def f():\n    from .a import g\n"})
    assert find_cycle(import_graph(lazy)) == ["pkgx.a", "pkgx.b", "pkgx.a"]
    eager = _package(tmp_path / "eager", {"__init__.py": "", "a.py": "from .b import y\nx = 1\n",
                                          "b.py": "from .a import x\ny = 2\n"})
    assert find_cycle(import_graph(eager)) is not None
    done = subprocess.run([sys.executable, "-c", _FIRST, "pkgx", "pkgx.a", eager],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "circular import" in done.stderr
    # a name from the package's own __init__.py is an edge to the package
    root = _package(tmp_path / "root", {"__init__.py": "from .a import f\nversion = '1'\n",
                                        "a.py": "def f():\n    from . import version\n"})
    assert find_cycle(import_graph(root)) == ["pkgx", "pkgx.a", "pkgx"]


# -- an extra that is not installed names its install command -----------------------------------------
_WITHOUT = textwrap.dedent("""
    import sys
    {setup}
    try:
        import xpnet.sklearn
    except ImportError as exc:
        print(type(exc).__name__, exc.name, exc, sep="|")
""")


@pytest.mark.parametrize("setup, kind, message", [
    ("sys.modules['sklearn'] = None  # `import sklearn` now raises, as when it is not installed",
     "ModuleNotFoundError", "xpnet.sklearn needs scikit-learn 1.6 or later, which is not installed: "
                            "pip install 'xpnet[sklearn]' (or pip install 'scikit-learn>=1.6')"),
    ("import types; sys.modules['sklearn'] = types.SimpleNamespace(__version__='1.5.2')",
     "ImportError", "xpnet.sklearn needs scikit-learn 1.6 or later (validate_data, __sklearn_tags__), but 1.5.2 "
                    "is installed: pip install -U 'scikit-learn>=1.6'"),
], ids=["not-installed", "too-old"])
def test_xpnet_sklearn_without_scikit_learn_names_the_extra(setup, kind, message):
    """In a fresh interpreter where scikit-learn cannot be imported (or is too old), whether or not this
    machine has it: the error says what to install, as the onnx, plot and backend extras do."""
    done = subprocess.run([sys.executable, "-c", _WITHOUT.format(setup=setup)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"{kind}|sklearn|{message}"
