"""The layers of distill_lib import one way, as the one table (``distill_lib/layers.py``) says;
the README and the folders' docstrings say the same; training loads no plotting or notebook stack.

Every import of every module is read with ``ast``: ``import``, ``from ... import``, and calls of
``importlib.import_module`` and ``__import__``, at module level or inside a function (a lazy
import is still a dependency), and resolved to its layer.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from distill_lib import layers
from distill_lib.layers import LAYERS, PLOTTING, layer_of, may_import, reachable

PACKAGE = Path(layers.__file__).resolve().parent
README = (PACKAGE.parent / "README.md").read_text()
DYNAMIC = "<a module named at run time>"  # an import call whose argument the test cannot read
IMPORT_CALLS = {"import_module", "__import__"}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _loop_constants(tree) -> dict:
    """name -> the strings a ``for name in ("a", "b")`` loop binds it to (for ``__import__(name)``)."""
    bound = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Name)
                and isinstance(node.iter, (ast.Tuple, ast.List))):
            values = [e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(values) == len(node.iter.elts):
                bound.setdefault(node.target.id, []).extend(values)
    return bound


def _called_names(call: ast.Call, name: str, package: str, bound: dict) -> set:
    """The modules an ``import_module(...)``/``__import__(...)`` call imports, or {DYNAMIC}."""
    if not call.args:
        return {DYNAMIC}
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        targets = [first.value]
    elif isinstance(first, ast.Name) and first.id in bound:
        targets = bound[first.id]
    else:
        return {DYNAMIC}
    anchor = call.args[1] if len(call.args) > 1 else None
    anchors = {"__name__": name, "__package__": package}
    found = set()
    for target in targets:
        if target.startswith("."):  # import_module(".x", __name__ or __package__ or "pkg")
            if isinstance(anchor, ast.Name) and anchor.id in anchors:
                base = anchors[anchor.id]
            elif isinstance(anchor, ast.Constant) and isinstance(anchor.value, str):
                base = anchor.value
            else:
                return {DYNAMIC}
            dots = len(target) - len(target.lstrip("."))
            base_parts = base.split(".")[: len(base.split(".")) - dots + 1]
            target = ".".join(base_parts + [target.lstrip(".")])
        found.add(target)
    return found


def imports_of(path: Path, package_dir: Path = PACKAGE) -> set:
    """Absolute names of every module ``path`` imports, anywhere in the file (DYNAMIC for a call
    whose module cannot be read)."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    bound = _loop_constants(tree)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
            else:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module:  # "from .x import y": x itself; "from .. import x" names submodules only
                    found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if called in IMPORT_CALLS:
                found |= _called_names(node, name, package, bound)
    return found


def violations(path: Path, package_dir: Path = PACKAGE) -> list:
    """Every import of ``path`` that its layer's row in the table does not allow."""
    importer = module_name(path, package_dir)
    own = layer_of(importer)
    problems = []
    for target in sorted(imports_of(path, package_dir)):
        if target == DYNAMIC:
            if set(LAYERS) - {own} - set(LAYERS[own].imports):  # only a layer that may import anything
                problems.append(f"{importer} ({own}) imports a module named at run time: the test cannot "
                                f"check it; import it by a literal name")
            continue
        layer = layer_of(target)
        if layer is not None and not may_import(own, layer):
            problems.append(f"{importer} ({own}) imports {target} ({layer})")
        if layer is None and target.split(".")[0] in PLOTTING and not LAYERS[own].plotting:
            problems.append(f"{importer} ({own}) imports {target}, a plotting or notebook package")
    return problems


def cycles_inside_layers(package_dir: Path = PACKAGE) -> list:
    """Import cycles among the modules of one layer (each as a list of modules, first repeated)."""
    paths = sorted(package_dir.rglob("*.py"))
    known = {module_name(p, package_dir) for p in paths}
    graph = {}
    for path in paths:
        name = module_name(path, package_dir)
        graph[name] = sorted(t for t in imports_of(path, package_dir)
                             if t in known and t != name and layer_of(t) == layer_of(name))
    found, state = [], {}  # state: 1 = on the current path, 2 = done

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                found.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in graph:
        if start not in state:
            visit(start, [start])
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer_of_the_table():
    assert [module_name(p) for p in MODULES if layer_of(module_name(p)) is None] == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_as_the_table_says(path):
    assert violations(path) == []


def test_no_import_cycle_inside_a_layer():
    assert cycles_inside_layers() == []


def test_the_table_has_no_cycle_and_batch_never_reaches_lessons_or_viz():
    order = list(LAYERS)
    for name, layer in LAYERS.items():
        assert all(order.index(other) < order.index(name) for other in layer.imports), name
    for name in ("batch", "cli"):
        assert not reachable(name) & {"lessons", "viz"}, name


def test_the_readme_prints_the_table():
    assert layers.readme_table() in README, "README's layout table differs: paste layers.readme_table()"


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _folder(name: str) -> Path:
    return PACKAGE / LAYERS[name].modules[0].split(".")[0]


@pytest.mark.parametrize("name", [name for name in LAYERS if _folder(name).is_dir()])
def test_each_folder_docstring_states_its_row(name):
    folder = _folder(name)
    docstring = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
    assert _normalised(layers.rule(name)) in _normalised(docstring), f"{folder.name}/__init__.py"


def test_the_layer_test_can_fail(tmp_path):
    root = tmp_path / "distill_lib"
    (root / "core").mkdir(parents=True)
    for path in (root / "__init__.py", root / "core" / "__init__.py"):
        path.write_text("")
    bad = root / "core" / "bad.py"
    bad.write_text("from ..lessons import temperature\n"
                   "import matplotlib.pyplot as plt\n"
                   "import importlib\n"
                   "def lazy():\n"
                   "    importlib.import_module('distill_lib.viz.curves')\n"
                   "    importlib.import_module('..methods.kd', __package__)\n"
                   "    for name in ('torch', 'distill_lib'):\n"
                   "        __import__(name)\n"
                   "    importlib.import_module(f'distill_lib.{name}')\n")
    (root / "core" / "a.py").write_text("from . import b\n")
    (root / "core" / "b.py").write_text("def f():\n    from .a import g\n")
    found = violations(bad, root)
    for expected in ("imports distill_lib.lessons.temperature (lessons)", "imports matplotlib.pyplot",
                     "imports distill_lib.viz.curves (viz)", "imports distill_lib.methods.kd (methods)",
                     "imports distill_lib (package)", "imports a module named at run time"):
        assert any(expected in problem for problem in found), (expected, found)
    assert cycles_inside_layers(root) == [["distill_lib.core.a", "distill_lib.core.b", "distill_lib.core.a"]]


def test_importing_and_training_loads_no_plotting_stack():
    code = (
        "import sys, torch\n"
        "import distill_lib as dl\n"
        "from distill_lib.core.data import Dataset\n"
        "images, labels = torch.rand(32, 1, 28, 28), torch.arange(32) % 10\n"
        "data = Dataset('tiny', 'train', images, labels, [str(i) for i in range(10)])\n"
        "teacher = dl.build_model('mlp-small', seed=1)\n"
        "dl.distill(dl.build_model('mlp-tiny'), teacher, data, epochs=1, progress='off', device='cpu')\n"
        "dl.fit(dl.build_model('mlp-tiny'), data, epochs=1, progress='off', device='cpu')\n"
        f"loaded = sorted(m for m in {sorted(PLOTTING)!r} if m in sys.modules)\n"
        "print('LOADED', loaded)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["sweep", "--help"]], ids=" ".join)
def test_the_command_line_help_loads_no_torch(argv):
    # torch takes about 2 s to import: asking the command line what it does must not wait for it
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "distill_lib", *argv], capture_output=True,
                            text=True, timeout=120, cwd=PACKAGE.parent)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "distill_lib.batch.cli" in imported  # the check reads the right output
    assert not {name for name in imported if name == "torch" or name.startswith("torch.")}, "torch was imported"
