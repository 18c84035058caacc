"""The package's shape: no import cycle between its modules, and no source file over 400 lines.

Import graph rules (``import_graph``):

- every ``import`` and ``from ... import`` of a ``napari_skd`` module counts, at the top of a module, inside a function
  or under ``if TYPE_CHECKING`` (a lazy import still ties two modules together; it only hides the cycle until a call);
- relative imports are resolved against the importing module's package (a package's ``__init__`` is its own package);
- ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its ``__init__``);
- importing ``a.b.c`` runs ``a.b``'s ``__init__`` first, so it is also an edge to ``a.b`` (and to ``a``);
- an edge from a module to a package that contains it is left out: Python has started loading that package before
  the module runs, so the import loads nothing new. This is what lets a package's ``__init__`` re-export its parts
  (``checkpoint/__init__.py`` imports ``checkpoint/load.py``) and a part read ``__version__`` from the top package,
  while a cycle that enters a package from outside still shows: ``a.x`` imports ``b``, whose ``__init__`` imports
  ``b.y``, which imports ``a.x`` (or ``a``, re-exporting ``a.x``).

Strings handed to ``importlib`` (``napari_skd.__getattr__``'s lazy names) are not imports.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "napari_skd"
MAX_LINES = 400


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``module -> modules it imports`` for every module of ``package`` (dotted names; packages by their name)."""
    files = {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    targets.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source)
        for target in targets & files.keys():
            parts = target.split(".")
            for loaded in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):  # a.b.c loads a, a.b, a.b.c
                if loaded != name and not name.startswith(loaded + "."):  # not a package holding this module
                    graph[name].add(loaded)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle closed by a back edge of a depth-first search (each as ``[a, b, ..., a]``)."""
    cycles, state, stack = [], {}, []  # state: 1 = on the current path, 2 = finished

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "napari_skd.checkpoint.format" in graph["napari_skd.checkpoint.load"]  # from .format import ...
    assert "napari_skd.errors" in graph["napari_skd.checkpoint.load"]  # from ..errors import ...
    assert "napari_skd.checkpoint" in graph["napari_skd.pretrained.manifest"]  # inside a function
    assert "napari_skd.pretrained" in graph["napari_skd.checkpoint.load"]  # runs pretrained/__init__.py first
    assert "napari_skd.checkpoint.load" in graph["napari_skd.checkpoint"]  # a package re-exporting its parts
    assert "napari_skd" not in graph["napari_skd.checkpoint.format"]  # from .. import __version__: loaded already


def test_a_package_may_re_export_its_parts_but_a_cycle_through_it_shows(tmp_path):
    def write(files: dict[str, str]) -> dict[str, set[str]]:
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        return import_graph(tmp_path / "p")

    graph = write(
        {
            "p/__init__.py": "VERSION = 1",
            "p/a/__init__.py": "from .x import f",
            "p/a/x.py": "from .. import VERSION\ndef f():\n    from ..b import g",
            "p/b/__init__.py": "from .y import g",
            "p/b/y.py": "def g(): ...",
        }
    )
    assert graph["p.a.x"] == {"p.b"} and graph["p.a"] == {"p.a.x"}
    assert find_cycles(graph) == []
    graph = write({"p/b/y.py": "from ..a import x"})  # p.a.x -> p.b -> p.b.y -> p.a.x
    assert graph["p.b.y"] == {"p.a", "p.a.x"}
    assert ["p.a.x", "p.b", "p.b.y", "p.a.x"] in find_cycles(graph)


def test_find_cycles_reports_a_cycle_however_deep():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (move what both sides need into a module below them):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_no_source_file_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"source files over {MAX_LINES} lines (split them by job): {long}"
