"""Files that must never be half-written or unsafe: the one atomic writer, JSON, safetensors.

Tensors are only ever read from safetensors, never from pickles, so a checkpoint cannot run code.
Every write goes to a temporary file beside the target first and is renamed into place, so a crash
never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from .errors import DataError, RunError

__all__ = [
    "atomic_write",
    "write_json",
    "save_tensors",
    "load_tensors",
    "read_config",
    "CONFIG",
    "WEIGHTS",
]

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")


def atomic_write(path: Path | str, data: bytes | str | Callable[[BinaryIO], None], make_parents: bool = False) -> None:
    """Write `data` (bytes, text as UTF-8, or a function writing to a binary file) to a temporary file beside
    `path`, fsync it and rename it over `path`; on any failure the temporary file is removed and `path` is
    untouched. A missing directory is a DataError unless `make_parents` (run directories)."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise DataError(f"{path}: output directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", make_parents=True)


def save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write a safetensors file (tensors made contiguous and moved to CPU)."""
    blob = safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    atomic_write(path, blob, make_parents=True)


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
