"""Turn a notebook's papermill parameters into a validated config object.

A notebook's ``parameters`` cell holds plain literals; ``None`` means "the profile's value"::

    profile: str = "quick"   # quick: mini data, CPU, minutes | full: full data, GPU, 3 seeds
    epochs: int | None = None  # None = the profile's value

and the next cell calls ``make_config(dict(profile=profile, epochs=epochs, ...), PROFILES,
checks={"epochs": checks.positive_int})``. Every value is resolved against the profile table,
type-checked against the profile's default, and validated before any work starts.
"""
from __future__ import annotations

from types import SimpleNamespace

from .core import checks as _checks

PROFILE_NAMES = ("quick", "full")
COMMON = ("profile", "seed", "interactive", "run_dir")  # every notebook declares these


class Config(SimpleNamespace):
    """Attribute access to the resolved parameters, plus ``as_dict()`` for metrics.json."""

    def as_dict(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        rows = "\n".join(f"  {k:<16} {v!r}" for k, v in vars(self).items())
        return f"Config(\n{rows}\n)"


def _type_ok(value, default) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def make_config(params: dict, profiles: dict, checks: dict | None = None) -> Config:
    """Resolve ``None`` values from ``profiles[params["profile"]]``, check types, run ``checks``."""
    profile = params.get("profile")
    _checks.one_of("profile", profile, list(profiles))
    table = profiles[profile]
    unresolved = sorted(k for k, v in params.items() if v is None and k not in table)
    if unresolved:
        raise ValueError(f"parameter(s) {unresolved} are None but profile {profile!r} has no value "
                         f"for them; give a value (profile keys: {sorted(table)})")
    resolved = {**table, **{k: v for k, v in params.items() if v is not None}}
    for name, value in resolved.items():
        if name in table and not _type_ok(value, table[name]):
            raise ValueError(f"{name} must be of type {type(table[name]).__name__} "
                             f"(like the profile's {table[name]!r}); got {value!r}")
    for name, check in (checks or {}).items():
        value = resolved[name]
        if isinstance(value, (list, tuple)):
            for item in value:
                check(name, item)
        else:
            check(name, value)
    return Config(**resolved)
