"""Generic configuration: a dataclass <- a YAML file of sections <- `section.key=value` overrides.

Each settings dataclass lives next to what it configures (`train/config.py`, `generation/config.py`,
...); its YAML defaults live in `vision3d_kd/configs/`. Override values are parsed as YAML.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["CONFIG_DIR", "dataclass_from", "parse_overrides", "read_sections"]

CONFIG_DIR = Path(__file__).parent / "configs"


def dataclass_from(klass: type, values: dict[str, Any], section: str) -> Any:
    """An instance of the dataclass `klass` with `values` over its defaults, each converted to the type of
    its default (tuples from lists; options whose default is None take numbers or None). Unknown keys or
    unconvertible values raise ConfigError naming `section.key`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(klass)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown {section} option(s): {', '.join(unknown)} (known: {', '.join(names)})")
    cfg = klass()
    for k, v in values.items():
        default = getattr(cfg, k)
        try:
            if default is None or v is None:
                if isinstance(v, (list, tuple)):
                    value = tuple(float(x) for x in v)
                else:
                    value = v if v is None or isinstance(v, (str, bool)) else float(v)
            elif isinstance(default, bool):
                if not isinstance(v, bool):
                    raise ValueError
                value = v
            elif isinstance(default, tuple):
                value = tuple(type(d)(x) for d, x in zip(default, v, strict=True))
            elif isinstance(default, dict):
                value = dict(v)
            else:
                value = type(default)(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{section}.{k}: expected {type(default).__name__}, got {v!r}") from None
        setattr(cfg, k, value)
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
