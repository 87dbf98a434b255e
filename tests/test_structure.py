"""The package's shape: every module imports, no import cycles, layers that only point down, no
private names across modules, docstrings.

The import graph counts *every* import statement of a module, including those inside functions:
a function-level import hides a cycle from the interpreter but not from the reader, and the layers
(:data:`LAYERS`: core < primitives < data < frames < models < evaluate < train < applications) are
only real if nothing below imports upward. Edges into a package's ``__init__`` are kept; the
top-level ``probseq`` package (lazy re-exports only) is left out, and so are imports under
``if TYPE_CHECKING:``, which only name types for annotations and never run.

"Private" is Python's convention: a name with one leading underscore belongs to the module (or the
object) that defines it. No module imports another's private name, and no code reads or writes a
private attribute of an object other than ``self``/``cls``/``super()`` (``other._x``,
``self.part._x``, ``getattr(other, "_x")``); the few third-party internals probseq must touch are
listed, each with its reason, in :data:`PRIVATE_ACCESS_ALLOWED`.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

import probseq

ROOT = Path(probseq.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


@functools.lru_cache(maxsize=None)
def _tree(name: str) -> ast.Module:
    """The parsed source of module ``name``, parsed once for all the checks below."""
    path = MODULES[name]
    return ast.parse(path.read_text(), str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@functools.lru_cache(maxsize=None)
def _imports(name: str) -> list[tuple[str, str | None]]:
    """``(module imported, name imported from it or None)`` for every import statement of ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    tree = _tree(name)
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rsplit(".", 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    out.append((f"{base}.{alias.name}", None))
                elif base in MODULES:
                    out.append((base, alias.name))
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(m) if t not in (m, "probseq")} for m in MODULES}


# The layers, bottom first. A module may import from its own layer and the layers below it, never
# from a layer above. A unit is a subpackage of probseq or a top-level module (``probseq.parallel``).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # errors, devices, thread counts, dtypes, what a log-likelihood number is, length distributions
    ("core", ("errors", "device", "threads", "precision", "likelihood", "lengths")),
    # self-contained algorithms that know no dataset or model: CTC dynamic programs and features,
    # text vocabularies, optimisers, Monte Carlo estimators of log Z, torch.distributed plumbing
    ("primitives", ("ctc", "text", "optim", "estimators", "parallel")),
    # datasets, batches, file formats and readers (io and data use each other, module by module),
    # the sampling loop over padded batches
    ("data", ("data", "io", "sampling")),
    ("frames", ("frames",)),
    # sequence models, and what they do with missing values (the particle filter, infilling), which
    # models call and which reads models only through their hooks
    ("models", ("models", "missing")),
    # scores any model through its public contract; the trainer validates with it
    ("evaluate", ("evaluate",)),
    ("train", ("train",)),
    # what a user runs, and the oracles/harnesses that tests drive end to end
    ("applications", ("demo", "reproduce", "testing", "cli", "__main__")),
]
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """``probseq.models.vrnn`` -> ``models``; ``probseq.parallel`` -> ``parallel``."""
    return module.split(".")[1]


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    offences = []
    for source, targets in graph.items():
        for target in sorted(targets):
            below, above = LAYER_OF[_unit(source)], LAYER_OF[_unit(target)]
            if above > below:
                offences.append(f"{source} ({LAYERS[below][0]}) imports {target} ({LAYERS[above][0]})")
    return offences


#: Private attributes probseq reads on objects other than ``self``/``cls`` on purpose, each with why:
#: ``(module, the expression as written)`` -> reason. Keep it short; anything else is an offence.
PRIVATE_ACCESS_ALLOWED: dict[tuple[str, str], str] = {
    ("probseq.io.safe_pickle", "numeric._frombuffer"):
        "numpy pickles arrays through numpy's _frombuffer; the restricted unpickler must name the "
        "function to allow exactly it",
}
#: namedtuple's documented public methods (the underscore only keeps them apart from field names)
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_make", "_fields", "_field_defaults"})
_OWN = ("self", "cls")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in NAMEDTUPLE_API


def _is_own(value: ast.expr) -> bool:
    """``self``, ``cls`` or ``super()``: the object whose private names the code may read."""
    if isinstance(value, ast.Name):
        return value.id in _OWN
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"


def _private_accesses(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, expression)`` for every read or write of a private attribute of an object other than
    ``self``/``cls``/``super()``: ``other._x``, ``self.part._x``, ``getattr(other, "_x")`` (and
    ``setattr``/``hasattr``/``delattr``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and not _is_own(node.value):
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value) and not _is_own(node.args[0])):
            found.append((node.lineno, ast.unparse(node)))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle_and_nothing_else():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (counting imports inside functions): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_every_module_belongs_to_one_layer():
    units = {_unit(m) for m in MODULES if m != "probseq"}
    assert not units - set(LAYER_OF), f"modules with no layer in LAYERS: {sorted(units - set(LAYER_OF))}"
    assert not set(LAYER_OF) - units, f"LAYERS names units that do not exist: {sorted(set(LAYER_OF) - units)}"
    assert len(LAYER_OF) == sum(len(units) for _, units in LAYERS), "a unit is listed in two layers"


def test_layer_check_sees_an_upward_import():
    graph = {"probseq.models.vrnn": {"probseq.train.fit", "probseq.frames.base"},
             "probseq.evaluate.sharded": {"probseq.parallel"}}
    assert _upward_imports(graph) == ["probseq.models.vrnn (models) imports probseq.train.fit (train)"]


def test_no_module_imports_a_higher_layer():
    offences = _upward_imports(_graph())
    assert not offences, "imports that point up the layers (counting imports inside functions): " + "; ".join(
        offences)


def test_layer_order_of_the_named_layers():
    """The order the design promises: data < frames < models < train, evaluate and parallel below train,
    parallel below evaluate."""
    assert LAYER_OF["data"] < LAYER_OF["frames"] < LAYER_OF["models"] < LAYER_OF["train"]
    assert LAYER_OF["io"] == LAYER_OF["data"]
    assert LAYER_OF["parallel"] < LAYER_OF["evaluate"] < LAYER_OF["train"]


def test_no_module_imports_another_modules_private_name():
    offences = [f"{m} imports {name} from {target}" for m in MODULES for target, name in _imports(m)
                if name is not None and name.startswith("_") and not name.startswith("__")]
    assert not offences, "; ".join(offences)


def test_private_access_check_sees_what_it_must():
    code = """
def f(self, vrnn, rbm, frame):
    vrnn._prior(self._h)
    self.rbm._scaled(frame)
    getattr(rbm, "_velocity", None)
    super()._load(self.__dict__, frame.__class__, cls._cache)
    packed._replace(data=1)
"""
    found = [expr for _, expr in _private_accesses(ast.parse(code))]
    assert sorted(found) == sorted(["vrnn._prior", "self.rbm._scaled", "getattr(rbm, '_velocity', None)"])


def test_no_module_reads_a_private_attribute_of_another_object():
    offences, used = [], set()
    for m, path in MODULES.items():
        for line, expr in _private_accesses(_tree(m)):
            if (m, expr) in PRIVATE_ACCESS_ALLOWED:
                used.add((m, expr))
            else:
                offences.append(f"{path.relative_to(ROOT.parent)}:{line}: {expr}")
    assert not offences, "private attributes read across objects: " + "; ".join(offences)
    assert used == set(PRIVATE_ACCESS_ALLOWED), f"stale allow-list entries: {set(PRIVATE_ACCESS_ALLOWED) - used}"


def test_private_modules_are_imported_only_inside_their_package():
    offences = []
    for m in MODULES:
        for target, _ in _imports(m):
            leaf = target.rsplit(".", 1)[-1]
            if leaf.startswith("_") and not leaf.startswith("__"):
                if not m.startswith(target.rsplit(".", 1)[0] + "."):
                    offences.append(f"{m} imports the private module {target}")
    assert not offences, "; ".join(offences)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_has_a_docstring_naming_its_responsibility(name):
    doc = ast.get_docstring(_tree(name))
    assert doc and len(doc.split()) >= 3, f"{MODULES[name]} has no module docstring saying what it is for"
