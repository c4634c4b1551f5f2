"""The layers of distill_lib import one way, and training loads no plotting or notebook stack.

Every import statement of every module is read with ``ast`` (function-level imports included:
a lazy import is still a dependency) and resolved to its layer; the rules are the folder
docstrings', written once here.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "distill_lib"
# layer -> layers it may import (besides itself)
ALLOWED = {
    "core": set(),
    "methods": {"core"},
    "loop": {"core", "methods"},
    "top": {"core", "methods", "loop", "top"},          # teachers, profiles, demo, audit
    "lessons": {"core", "methods", "loop", "top"},
    "viz": {"core", "methods", "loop", "top", "lessons"},
    "batch": {"core", "top"},
    "package": {"core", "methods", "loop", "top", "lessons", "viz", "batch"},  # __init__, __main__
}
PLOTTING = {"matplotlib", "IPython", "ipywidgets", "papermill", "nbclient", "nbformat", "jupyter_client"}
NO_PLOTTING = {"core", "methods", "loop", "top"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "distill_lib":
        return "external"
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "package"
    if parts[1] in ("core", "methods", "lessons", "viz", "batch"):
        return parts[1]
    return "loop" if parts[1] == "loop" else "top"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set:
    """Absolute names of every module ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module)
            else:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module:  # "from .x import y": x itself; "from .. import x" names submodules only
                    found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def internal_modules() -> set:
    return {module_name(p) for p in PACKAGE.rglob("*.py")}


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    own = layer_of(module_name(path))
    known = internal_modules()
    for target in imports_of(path):
        layer = layer_of(target)
        if layer == "external" or (target not in known and target.rsplit(".", 1)[0] in known
                                   and not target.startswith("distill_lib.")):
            continue
        assert layer == own or layer in ALLOWED[own], f"{module_name(path)} ({own}) imports {target} ({layer})"


@pytest.mark.parametrize("path", [p for p in MODULES if layer_of(module_name(p)) in NO_PLOTTING],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_layers_import_no_plotting_or_notebook_package(path):
    roots = {name.split(".")[0] for name in imports_of(path)}
    assert not roots & PLOTTING, f"{module_name(path)} imports {sorted(roots & PLOTTING)}"


def test_batch_never_reaches_lesson_code_even_indirectly():
    graph = {module_name(p): {t for t in imports_of(p) if t in internal_modules()} for p in MODULES}
    for start in (m for m in graph if layer_of(m) == "batch"):
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            for target in graph.get(current, ()):
                assert layer_of(target) != "lessons", f"{start} reaches {target}"
                if target not in seen:
                    seen.add(target)
                    todo.append(target)


def test_the_layer_test_can_fail(tmp_path):
    # a core module that imports a lesson, and one that imports matplotlib, must both be caught
    bad = tmp_path / "distill_lib" / "core" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..lessons import temperature\nimport matplotlib.pyplot as plt\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "distill_lib"
    try:
        targets = imports_of(bad)
        assert "distill_lib.lessons.temperature" in targets and "matplotlib.pyplot" in targets
        assert layer_of("distill_lib.lessons.temperature") not in ALLOWED["core"]
    finally:
        PACKAGE = saved


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
