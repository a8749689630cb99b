"""The shape of the import graph: one-way layers, no cycles, no private names across modules.

Every ``import`` in every module under src/collapsekit counts, also those inside functions and
under ``TYPE_CHECKING``: a lazy import is still a dependency. A *part* is a top-level package or
module of collapsekit (``training``, ``_io``, ...). The layers, lowest first; a part may import its
own modules and the parts of lower layers only (parts of one layer are peers: neither imports the
other):

    errors
    _io, _validation, _threads, _progress, activity, formatting   (base utilities; no collapsekit imports but errors)
    data
    theory
    models
    objectives
    adapters           (models of other libraries behind one protocol: what the diagnostics read)
    diagnostics        (measurement: what training and the reports use)
    training, viz      (peers: the trainer never draws, the figures never train)
    integrations       (other libraries' trainers: a Pythae callback running the monitor)
    runs, checkup, forecast (peers: a run directory read back, needing the trainer's checkpoints and the
                        diagnostics; the doctor's checks on any adapted model; the end-of-run forecast)
    experiments        (sweeps and the paper's presets)
    cli                (the only part that parses arguments and prints results)

The package itself (``collapsekit/__init__.py``: lazy re-exports) and ``collapsekit/__main__.py``
stand above every layer; a module may take from the package only what it binds without importing
(``__version__``, the errors).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "collapsekit"
SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest first; see the module docstring.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    # activity: the headline rule of an active dimension (issue 10), from a concurrent branch; numpy only
    ("_io", "_validation", "_threads", "_progress", "activity", "formatting"),
    ("data",),
    ("theory",),
    ("models",),
    ("objectives",),
    ("adapters",),      # foreign models behind one protocol: needs models, the diagnostics use it (issue 12)
    ("diagnostics",),
    ("training", "viz"),
    ("integrations",),  # other libraries' training loops (Pythae's trainer): needs training and adapters (issue 12)
    ("runs", "checkup", "forecast"),  # checkup (collapsekit.doctor): the checks that tell a bug from a collapse, on any adapted model (issue 12 §2)
                        # forecast: the end-of-run active count of a configuration (issue 11)
    ("experiments",),
    ("cli",),
)
RANK = {part: rank for rank, layer in enumerate(LAYERS) for part in layer}


@dataclass(frozen=True)
class Import:
    module: str          # the importing module, dotted
    target: str          # the imported module, dotted (``from a import b``: ``a.b`` when that is a module)
    names: tuple[str, ...]
    line: int

    def where(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.module}:{self.line} imports {self.target}{names}"


def modules(src: Path) -> dict[str, Path]:
    """Dotted name → file, for every module of the package."""
    found = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(src: Path) -> Iterator[Import]:
    """Every import of a collapsekit module by a collapsekit module, wherever it is written."""
    known = modules(src)
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        yield Import(module, alias.name, (), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != PACKAGE:
                    continue
                names = tuple(alias.name for alias in node.names)
                submodules = [name for name in names if f"{source}.{name}" in known]
                for name in submodules:                       # `from collapsekit.cli import terminal`
                    yield Import(module, f"{source}.{name}", (), node.lineno)
                rest = tuple(name for name in names if name not in submodules)
                if rest:
                    yield Import(module, source, rest, node.lineno)


def part(module: str) -> str | None:
    """``collapsekit.training.trainer`` → ``training``; None for the package itself and ``__main__``."""
    pieces = module.split(".")
    return None if len(pieces) == 1 or pieces[1] == "__main__" else pieces[1]


def bound_by_package(src: Path) -> set[str]:
    """Names ``collapsekit/__init__.py`` binds when it runs (not those its ``__getattr__`` imports on use)."""
    tree = ast.parse((src / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names - {"__getattr__"}


def layer_violations(src: Path) -> list[str]:
    problems = []
    unplaced = sorted({p for p in map(part, modules(src)) if p is not None and p not in RANK})
    problems += [f"part {p!r} is in no layer: add it to LAYERS in tests/test_architecture.py" for p in unplaced]
    package_names = bound_by_package(src)
    for edge in imports(src):
        mine, theirs = part(edge.module), part(edge.target)
        if mine is None or mine == theirs or mine not in RANK:
            continue
        if theirs is None:                                       # the package itself
            lazy = [name for name in edge.names if name not in package_names]
            if edge.target == PACKAGE and lazy:
                problems.append(f"{edge.where()}: {', '.join(lazy)} come from the package's lazy __getattr__; "
                                "import them from their own module")
            continue
        if theirs not in RANK:
            continue                                             # reported as unplaced above
        if RANK[theirs] >= RANK[mine]:
            kind = "a peer" if RANK[theirs] == RANK[mine] else "a higher layer"
            problems.append(f"{edge.where()}: {mine} may not import {theirs} ({kind})")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def part_cycles(src: Path) -> list[list[str]]:
    edges: dict[str, set[str]] = {}
    for edge in imports(src):
        mine, theirs = part(edge.module), part(edge.target)
        if mine is not None and theirs is not None and mine != theirs:
            edges.setdefault(mine, set()).add(theirs)
    return cycles(edges)


def module_cycles(src: Path) -> list[list[str]]:
    """Cycles between single modules (a package's ``__init__`` importing its own modules counts as an edge)."""
    edges: dict[str, set[str]] = {}
    for edge in imports(src):
        if edge.target != edge.module:
            edges.setdefault(edge.module, set()).add(edge.target)
    return cycles(edges)


def private_imports(src: Path) -> list[str]:
    """``from a import _b`` where ``_b`` is a name (not a module) private to another module."""
    return [f"{edge.where()}: private name(s) {', '.join(n for n in edge.names if _private(n))}"
            for edge in imports(src) if any(_private(name) for name in edge.names)]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# -- the tests -----------------------------------------------------------------------------------------
def test_the_checks_see_every_kind_of_import(tmp_path):
    """On a made-up package: imports in functions, under TYPE_CHECKING, relative ones and
    ``from collapsekit import module`` are all found, and each check reports what it should."""
    files = {
        "__init__.py": "__version__ = '0'\n\ndef __getattr__(name):\n    import collapsekit.training\n",
        "errors.py": "",
        "data/__init__.py": "def load():\n    from collapsekit.training import train\n",
        "theory/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from collapsekit import cli\n",
        "models/__init__.py": "from collapsekit import __version__, lazy_name\n",
        "training/__init__.py": "from .loop import train\n",
        "training/loop.py": "from ..theory import _private_helper\ndef train():\n    pass\n",
        "viz/__init__.py": "from collapsekit.training.loop import train\n",
        "cli/__init__.py": "from collapsekit.cli import verb\n",
        "cli/verb.py": "import collapsekit.cli\nimport collapsekit.data\n",
    }
    for name, text in files.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    layers = "\n".join(layer_violations(tmp_path))
    assert "data:2 imports collapsekit.training (train): data may not import training (a higher layer)" in layers
    assert "theory:3 imports collapsekit.cli: theory may not import cli (a higher layer)" in layers
    assert "viz:1 imports collapsekit.training.loop (train): viz may not import training (a peer)" in layers
    assert "lazy_name come from the package's lazy __getattr__" in layers and "__version__ come" not in layers
    assert "training.loop:1 imports collapsekit.theory" not in layers            # downward: allowed
    assert len(layers.splitlines()) == 4
    assert part_cycles(tmp_path) == [["cli", "data", "theory", "training"]]
    assert module_cycles(tmp_path) == [[f"collapsekit.{m}" for m in ("cli", "cli.verb", "data", "theory", "training",
                                                                     "training.loop")]]
    assert private_imports(tmp_path) == [
        "collapsekit.training.loop:1 imports collapsekit.theory (_private_helper): private name(s) _private_helper"]


def test_every_part_imports_only_lower_layers():
    problems = layer_violations(SRC)
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_the_parts_form_an_acyclic_graph():
    assert not part_cycles(SRC), f"import cycles between parts: {part_cycles(SRC)}"


def test_no_module_import_cycle():
    assert not module_cycles(SRC), f"import cycles between modules: {module_cycles(SRC)}"


def test_no_private_name_is_imported_from_another_module():
    problems = private_imports(SRC)
    assert not problems, "private names imported across modules:\n" + "\n".join(problems)
