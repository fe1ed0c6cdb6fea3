"""Generic configuration: a dataclass <- a YAML file of sections <- `section.key=value` overrides, and
settings dataclasses with declared types and bounds (one checker, `check_config`).

Each settings dataclass lives next to what it configures (`fields/*.py`, `train/config.py`,
`generation/config.py`, ...); its YAML defaults live in `vision3d_kd/configs/`. Override values are
parsed as YAML.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from .errors import ConfigError

__all__ = ["CONFIG_DIR", "dataclass_from", "parse_overrides", "read_sections", "CheckedConfig", "check_config",
           "bounded", "schedule_option", "aabb_option"]

CONFIG_DIR = Path(__file__).parent / "configs"
Bound = float | Callable[[Any], float] | None  # a fixed bound, or one computed from the config


def dataclass_from(klass: type, values: dict[str, Any], section: str) -> Any:
    """An instance of the dataclass `klass` with `values` over its defaults, coerced and checked by
    `check_config`. Unknown keys or bad values raise ConfigError naming `section.key`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(klass) if f.init]
    unknown = sorted(set(map(str, values)) - set(names))
    if unknown:
        raise ConfigError(f"unknown {section} option(s): {', '.join(unknown)} (known: {', '.join(names)})")
    cfg = klass(**values)
    if not isinstance(cfg, CheckedConfig):  # a CheckedConfig has checked itself
        check_config(cfg, section)
    return cfg


def read_sections(path: Path, sections: tuple[str, ...]) -> dict[str, Any]:
    """The top-level mapping of a YAML config file whose keys must be among `sections` (ConfigError for a
    missing file, invalid YAML or other keys)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or set(raw) - set(sections):
        raise ConfigError(f"{path}: expected top-level keys {', '.join(sections)}")
    return raw


def parse_overrides(overrides: list[str], sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`section.key=value` strings -> {section: {key: value}} (value parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in sections or not name:
            forms = " or ".join(f"{s}.KEY=VALUE" for s in sections)
            raise ConfigError(f"override {item!r}: expected {forms}")
        try:
            out[section][name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
    return out


# ------------------------------------------------------------------------------ declarative options
# A settings dataclass declares each option's type in its annotation and its bounds in field metadata
# (`bounded`, `schedule_option`, `aabb_option`); `check_config` coerces and checks them all, so there is
# one validation path for fit, convert, generate and every field family's `*Config`.


def bounded(default: Any, lo: Bound = None, hi: Bound = None) -> Any:
    """A dataclass field with an immutable `default` whose value must lie in [lo, hi] (None: open). A
    bound may be a function of the config, e.g. `lo=lambda c: c.base_resolution`."""
    return dataclasses.field(default=default, metadata={"lo": lo, "hi": hi})


def schedule_option(default: tuple[tuple[int, int], ...], lo: int = 1, hi: int | None = None,
                    what: str = "value") -> Any:
    """A list of [step, value] pairs: steps >= 0 and increasing, each value (`what`) an int in [lo, hi]."""
    return dataclasses.field(default=default, metadata={"kind": "schedule", "lo": lo, "hi": hi, "what": what})


def aabb_option(default: Any) -> Any:
    """A box [[xmin, ymin, zmin], [xmax, ymax, zmax]] (finite, min < max on every axis; world units)."""
    return dataclasses.field(default=default, metadata={"kind": "aabb"})


@dataclass
class CheckedConfig:
    """Base of settings dataclasses: every instance (made directly, by `dataclasses.replace` or by
    `dataclass_from`) is coerced and checked by `check_config`; errors name `section.option`."""

    section: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        check_config(self, self.section)


def check_config(cfg: Any, section: str) -> None:
    """Coerce every option of the dataclass instance `cfg` to its annotated type (int: integral numbers;
    float: finite numbers or numeric strings, which YAML 1.1 makes of `1e-6`; Literal: one of its values;
    tuples element-wise; schedules and boxes per their metadata), then check the declared bounds. In
    place; ConfigError naming `section.option` for the first bad value."""
    hints = _hints(type(cfg))
    fields = dataclasses.fields(cfg)
    for f in fields:
        tp = hints.get(f.name) or (type(f.default) if f.default not in (dataclasses.MISSING, None) else Any)
        object.__setattr__(cfg, f.name, _coerce(tp, getattr(cfg, f.name), f"{section}.{f.name}", f.metadata))
    for f in fields:
        value = getattr(cfg, f.name)
        if value is not None and not f.metadata.get("kind"):
            lo, hi = (b(cfg) if callable(b) else b for b in (f.metadata.get("lo"), f.metadata.get("hi")))
            _check_range(value, lo, hi, f"{section}.{f.name}")


@functools.cache
def _hints(klass: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(klass)
    except (NameError, TypeError):  # an annotation this module cannot resolve: fall back to the default's type
        return {}


def _coerce(tp: Any, v: Any, label: str, meta: Any) -> Any:
    """`v` as type `tp` (see `check_config`), else ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return _coerce(rest[0], v, label, meta) if len(rest) == 1 else v
    kind = meta.get("kind")
    if kind == "aabb":
        return _aabb(v, label)
    if kind == "schedule":
        return _schedule(v, label, meta["lo"], meta["hi"], meta["what"])
    if origin is typing.Literal:
        if not any(type(v) is type(a) and v == a for a in args):
            raise ConfigError(f"{label}={v!r} must be one of {', '.join(map(str, args))}")
        return v
    if tp is bool and not isinstance(v, bool):
        raise ConfigError(f"{label} must be true or false, got {v!r}")
    if tp is int:
        return _int(v, label)
    if tp is float:
        return _float(v, label)
    if tp is str and not isinstance(v, str):
        raise ConfigError(f"{label} must be a string, got {v!r}")
    if tp is dict or origin is dict:
        if not isinstance(v, Mapping):
            raise ConfigError(f"{label} must be a mapping, got {v!r}")
        return dict(v)
    if tp is tuple or origin is tuple:
        return _tuple(args, v, label)
    return v


def _int(v: Any, label: str) -> int:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):  # Integral: numpy ints too
        raise ConfigError(f"{label} must be an integer, got {v!r}")
    return int(v)


def _float(v: Any, label: str) -> float:
    try:
        x = float(v) if isinstance(v, (numbers.Real, str)) and not isinstance(v, bool) else math.nan
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise ConfigError(f"{label} must be a finite number, got {v!r}")
    return x


def _tuple(args: tuple[Any, ...], v: Any, label: str) -> tuple[Any, ...]:
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ConfigError(f"{label} must be a list, got {v!r}")
    items = list(v)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(args[0], x, label, {}) for x in items)
    if args and len(items) != len(args):
        raise ConfigError(f"{label} must have {len(args)} values, got {v!r}")
    return tuple(_coerce(a, x, label, {}) for a, x in zip(args, items, strict=True)) if args else tuple(items)


def _check_range(v: Any, lo: Any, hi: Any, label: str) -> None:
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f"out of range [{lo}, {hi}]" if lo is not None and hi is not None else (
            f"must be >= {lo}" if lo is not None else f"must be <= {hi}")
        raise ConfigError(f"{label}={v} {bounds}")


def _schedule(v: Any, label: str, lo: int, hi: int | None, what: str) -> tuple[tuple[int, int], ...]:
    if v is None:
        return ()
    if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
        raise ConfigError(f"{label} must be a list of [step, {what}] pairs, got {v!r}")
    out: list[tuple[int, int]] = []
    for item in v:
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise ConfigError(f"{label} needs [step, {what}] pairs, got {item!r}")
        step, value = _int(item[0], f"{label} step"), _int(item[1], f"{label} {what}")
        _check_range(step, 0, None, f"{label} step")
        _check_range(value, lo, hi, f"{label} {what}")
        if out and step <= out[-1][0]:
            raise ConfigError(f"{label} steps must increase, got {v!r}")
        out.append((step, value))
    return tuple(out)


def _aabb(v: Any, label: str) -> tuple[tuple[float, ...], ...]:
    msg = f"{label} must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with min < max, got {v!r}"
    v = v.tolist() if hasattr(v, "tolist") else v  # a tensor or array
    try:
        box = tuple(tuple(float(x) for x in corner) for corner in v)
    except (TypeError, ValueError):
        raise ConfigError(msg) from None
    if len(box) != 2 or any(len(c) != 3 for c in box) or not all(map(math.isfinite, box[0] + box[1])):
        raise ConfigError(msg)
    if any(a >= b for a, b in zip(*box, strict=True)):
        raise ConfigError(msg)
    return box
