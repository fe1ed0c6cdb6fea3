"""Run directories: `config.json` + `weights.safetensors` (+ `metrics.json`, `log.jsonl`).

Weights are only ever read from safetensors, never from pickles, so a checkpoint cannot run code.
Every write goes to a temporary file first and is renamed into place, so a crash never leaves a
half-written file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .errors import RunError

__all__ = [
    "atomic_write_text",
    "write_json",
    "save_tensors",
    "load_tensors",
    "read_config",
    "save_field",
    "load_field",
]

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")


def _tmp_in(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and an atomic rename."""
    tmp = _tmp_in(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file (tensors made contiguous and moved to CPU)."""
    tmp = _tmp_in(path)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_tensors(path: Path, check_finite: bool = True) -> dict[str, Tensor]:
    """Read a safetensors file; RunError if missing, unreadable or (optionally) holding NaN/inf."""
    path = Path(path)
    if not path.is_file():
        pickles = [p.name for p in path.parent.glob("*") if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise RunError(
                f"{path.parent / pickles[0]}: weights are a pickle; refusing to load it "
                f"(pickles can run code) - expected {path.name}"
            )
        raise RunError(f"{path}: weights file not found")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    if check_finite:
        for name, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise RunError(f"{path}: tensor '{name}' holds NaN or inf values")
    return tensors


def read_config(run: Path) -> dict[str, Any]:
    """Read RUN/config.json; RunError naming the file when it is absent or malformed."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"{run}: run directory does not exist")
    path = run / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: not found (is {run} a run directory?)") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(cfg, dict):
        raise RunError(f"{path}: expected a JSON object")
    return cfg


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def save_field(run: Path, field: torch.nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Write RUN/weights.safetensors then RUN/config.json ({"field": field.to_dict(), **extra})."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    save_tensors(run / WEIGHTS, field.state_dict())
    write_json(run / CONFIG, _json_safe({"field": field.to_dict(), **(extra or {})}))


def load_field(run: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load the field of a run directory (safetensors only; NaN weights refused). Returns (field, config)."""
    from .errors import ConfigError
    from .fields import build_field

    run = Path(run)
    cfg = read_config(run)
    tensors = load_tensors(run / WEIGHTS)
    field_cfg = cfg.get("field")
    if not isinstance(field_cfg, dict):
        raise RunError(f"{run / CONFIG}: 'field' must be an object with the field's configuration")
    try:
        field = build_field(field_cfg)
    except ConfigError as exc:
        raise RunError(f"{run / CONFIG}: {exc}") from None
    if hasattr(field, "prepare_state"):
        field.prepare_state(tensors)  # fields whose parameter shapes change during training
    try:
        field.load_state_dict(tensors)
    except RuntimeError as exc:
        raise RunError(f"{run / WEIGHTS}: does not match the config ({str(exc).splitlines()[0]})") from None
    return field, cfg
