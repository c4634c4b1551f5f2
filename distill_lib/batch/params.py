"""Notebook parameters and notebook lookup for the runner: everything checked before a run starts.

Parameters flow one way: only names the notebook declares in its papermill ``parameters`` cell
are accepted, and values (strings from the command line, or Python values) are parsed to the
type the cell declares. A refusal names the parameter and value and lists the notebook's
parameters with their types, defaults and comments.
"""
from __future__ import annotations

import ast
from pathlib import Path

from ..profiles import PROFILE_NAMES, check_run

PROFILES = PROFILE_NAMES  # defined once, with every notebook's settings, in distill_lib/profiles.py
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the repository: distill_lib/batch/params.py -> ../..
# The runner sets these itself; a -p for them would silently fight the option that owns them.
RESERVED = {
    "profile": "use --profile",
    "run_dir": "the runner sets it from --out",
    "interactive": "batch runs are always headless (interactive=False)",
}
_BOOL_WORDS = {"true": True, "1": True, "false": False, "0": False}
# Language editions: the English notebooks in notebooks/, the Chinese ones (the same code) in
# notebooks/zh/. A notebook's edition is the folder it lies in; a zh run goes to <out>/zh/<name>.
ZH_FOLDER = "zh"
LANGUAGES = ("en", ZH_FOLDER)
_INVALID = object()


# ---------------------------------------------------------------- parameters

def notebook_parameters(notebook) -> dict[str, dict]:
    """The ``parameters`` cell as papermill reads it: name -> {name, inferred_type_name, default, help}.

    papermill silently skips a line with more than one ``=`` (``x: int = 1  # x = 3 fails``) or an
    annotation it cannot read (``int | None``); such a parameter could then never be checked or
    set, so the notebook is refused here with the lines to fix.
    """
    import papermill  # ~2 s to import: only when a notebook is actually inspected

    read_notebook(notebook)  # a file that is no notebook is refused here, not in papermill's traceback
    try:
        declared = papermill.inspect_notebook(str(notebook))
    except ValueError as error:  # e.g. no kernelspec in the notebook's metadata
        raise ValueError(f"{Path(notebook).name}: {error}") from None
    unread = {name: line for name, line in _assigned_names(notebook).items() if name not in declared}
    if unread:
        lines = "\n".join(f"  {line}" for line in unread.values())
        raise ValueError(f"{Path(notebook).name}: papermill cannot read these lines of the parameters "
                         f"cell:\n{lines}\nWrite `name: type = literal  # comment` with a single '=' "
                         "(none in the comment) and a plain type: int, float, bool, str or "
                         "Optional[int] (not `int | None`).")
    return declared


def read_notebook(notebook):
    """The notebook at ``notebook`` (nbformat v4), checked against the notebook schema; ``ValueError``
    saying what the file is instead (unreadable, not JSON, JSON that is no notebook)."""
    import nbformat

    path = Path(notebook)
    try:
        node = nbformat.read(str(path), as_version=4)
        nbformat.validate(node)
    except OSError as error:
        raise ValueError(f"notebook {str(path)!r} cannot be read ({error.strerror or error})") from None
    except Exception as error:  # JSON errors, nbformat's own validation and reader errors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{str(path)!r} is not a Jupyter notebook (nbformat 4): {reason[:200]}; give a "
                         f".ipynb file saved by Jupyter") from None
    return node


def _assigned_names(notebook) -> dict[str, str]:
    """Names assigned at the top of the ``parameters`` cell -> their source line."""
    cells = read_notebook(notebook).cells
    source = next((c.source for c in cells if "parameters" in c.metadata.get("tags", [])), "")
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics etc.: leave the judgement to papermill
        return {}
    lines = source.splitlines()
    names = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if isinstance(target, ast.Name):
                names[target.id] = lines[node.lineno - 1].strip()
    return names


def describe_parameters(notebook, declared: dict | None = None) -> str:
    """One line per parameter: name, type, default and the comment from the parameters cell."""
    declared = notebook_parameters(notebook) if declared is None else declared
    if not declared:
        return f"{Path(notebook).name} declares no parameters (no cell tagged 'parameters')."
    width = max(map(len, declared))
    lines = [f"Parameters of {Path(notebook).name}:"]
    for p in declared.values():
        type_name = _declared_type(p)[0] or "any"
        lines.append(f"  {p['name']:<{width}}  {type_name:<5} = {p['default']:<12} # {p['help']}")
    return "\n".join(lines)


def check_parameters(notebook, params: dict, declared: dict | None = None) -> dict:
    """``params`` parsed to the types the notebook declares; ``ValueError`` (listing them) if not.

    Strings (as the CLI gives them) are parsed: int, float (ints accepted), bool (true/false/1/0),
    str, and ``None``/``null`` where the default is None. Unknown names are refused.
    """
    declared = notebook_parameters(notebook) if declared is None else declared
    unknown = [name for name in params if name not in declared]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"{Path(notebook).name}: unknown parameter {names}.\n"
                         + describe_parameters(notebook, declared))
    try:
        return {name: parse_value(name, value, declared[name]) for name, value in params.items()}
    except ValueError as error:
        raise ValueError(f"{Path(notebook).name}: {error}\n"
                         + describe_parameters(notebook, declared)) from None


def parse_value(name: str, value, declared: dict):
    """``value`` (a CLI string or a Python value) as the declared type of parameter ``name``."""
    base, allows_none = _declared_type(declared)
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # numpy/torch scalars from the Python API
    if allows_none and (value is None or value in ("None", "null")):
        return None
    parsed = _PARSERS.get(base, _parse_literal)(value)
    if parsed is _INVALID:
        expected = (base or "a Python literal") + (" or None" if allows_none else "")
        if base == "bool":
            expected += " (true, false, 1 or 0)"
        raise ValueError(f"parameter {name!r} cannot take {value!r}: expected {expected}.")
    return parsed


def check_settings(notebook, profile: str, values: dict) -> None:
    """The notebook's own range checks (``distill_lib.profiles``), before any kernel starts: a
    temperature of -1 or a bad budget string is refused here, not 8 s later inside the kernel."""
    try:
        check_run(Path(notebook).stem, profile, values)
    except ValueError as error:
        raise ValueError(f"{Path(notebook).name}: {error}") from None


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    return profile


def check_not_reserved(names) -> None:
    for name in names:
        if name in RESERVED:
            raise ValueError(f"parameter {name!r} cannot be given with -p: {RESERVED[name]}.")


def injected_parameters(declared: dict, *, profile: str, run_dir) -> dict:
    """What the runner sets itself, for the names the notebook declares (and only those)."""
    values = {"profile": profile, "interactive": False, "run_dir": str(Path(run_dir).resolve())}
    return {name: value for name, value in values.items() if name in declared}


def _declared_type(declared: dict) -> tuple[str | None, bool]:
    """(base type name, or None when unknown; whether None is an allowed value)."""
    text = declared["inferred_type_name"].replace(" ", "")
    default = declared["default"].strip()
    parts = text.removeprefix("Optional[").removesuffix("]").split("|")
    allows_none = default == "None" or text.startswith("Optional[") or "None" in parts[1:]
    base = None if text == "None" else parts[0]
    if base is None:  # no annotation: go by the default literal's type
        try:
            base = type(ast.literal_eval(default)).__name__
        except (ValueError, SyntaxError):
            base = None
    return (base if base in _PARSERS else None), allows_none


def _parse_int(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(value.strip()) if isinstance(value, str) else _INVALID
    except ValueError:
        return _INVALID


def _parse_float(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value.strip()) if isinstance(value, str) else _INVALID
    except ValueError:
        return _INVALID


def _parse_bool(value):
    if isinstance(value, bool):
        return value
    return _BOOL_WORDS.get(value.strip().lower(), _INVALID) if isinstance(value, str) else _INVALID


def _parse_str(value):
    return value if isinstance(value, str) else _INVALID


def _parse_literal(value):
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


_PARSERS = {"int": _parse_int, "float": _parse_float, "bool": _parse_bool, "str": _parse_str}


# ---------------------------------------------------------------- notebooks

def default_notebooks_dir() -> Path:
    """``./notebooks`` when it exists, else the one next to the distill_lib package."""
    local = Path("notebooks")
    return local if local.is_dir() else PACKAGE_ROOT / "notebooks"


def check_language(lang: str) -> str:
    if lang not in LANGUAGES:
        raise ValueError(f"--lang must be one of {', '.join(LANGUAGES)}; got {lang!r}")
    return lang


def edition_of(notebook) -> str:
    """``"zh"`` for a notebook in a folder named zh (the Chinese edition), else ``"en"``."""
    return ZH_FOLDER if Path(notebook).parent.name == ZH_FOLDER else "en"


def run_dir_of(out, notebook) -> Path:
    """``<out>/<name>``, or ``<out>/zh/<name>`` for the Chinese edition: both editions of a notebook
    can run into one ``--out``."""
    return Path(out) / (ZH_FOLDER if edition_of(notebook) == ZH_FOLDER else "") / Path(notebook).stem


def resolve_notebooks(names, notebooks_dir=None, lang: str = "en") -> list[Path]:
    """Paths for ``names`` (a path, ``01``, ``01_teacher_training``); all notebooks when empty.
    ``lang="zh"`` looks short names up in the Chinese edition (``<notebooks_dir>/zh``); a path is
    taken as it is."""
    folder = Path(notebooks_dir) if notebooks_dir else default_notebooks_dir()
    if check_language(lang) == ZH_FOLDER:
        folder = folder / ZH_FOLDER
    available = sorted(folder.glob("*.ipynb"))
    if not names:
        if not available:
            raise ValueError(f"no notebooks found in {folder.resolve()}")
        return available
    return [_resolve_one(str(name), folder, available) for name in names]


def _resolve_one(name: str, folder: Path, available: list[Path]) -> Path:
    if Path(name).is_file():
        return Path(name)
    stem = name.removesuffix(".ipynb")
    matches = [p for p in available if p.stem == stem] or [
        p for p in available if p.stem.startswith(stem + "_")]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(p.stem for p in available) or "none"
    problem = "is ambiguous" if matches else "matches no notebook"
    raise ValueError(f"notebook {name!r} {problem} in {folder}; available: {known}")
