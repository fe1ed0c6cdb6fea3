"""Resumable training state: optimizer moments, step counter and RNG state in one safetensors file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from ..checkpoint import load_tensors, save_tensors
from ..errors import RunError

__all__ = ["TRAIN_STATE", "save_train_state", "load_train_state", "truncate_log"]

TRAIN_STATE = "train_state.safetensors"


def save_train_state(run: Path, optimizer: torch.optim.Optimizer, meta: dict[str, Any],
                     generator: torch.Generator, extra: dict[str, Tensor] | None = None) -> None:
    """Write RUN/train_state.safetensors: optimizer tensors as `opt.<param>.<key>`, the sampling RNG,
    `extra` tensors (e.g. the occupancy grid) and JSON metadata (step, param groups, ...)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {"rng": generator.get_state()}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"opt.{pid}.{key}"] = value if isinstance(value, Tensor) else torch.tensor(value)
    for key, value in (extra or {}).items():
        tensors[f"extra.{key}"] = value
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    save_tensors(run / TRAIN_STATE, tensors, metadata={"meta": json.dumps(meta), "param_groups": json.dumps(groups)})


def load_train_state(run: Path, optimizer: torch.optim.Optimizer, generator: torch.Generator
                     ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Restore optimizer and RNG from RUN/train_state.safetensors. Returns (meta, extra tensors)."""
    path = run / TRAIN_STATE
    if not path.is_file():
        raise RunError(f"{path}: no training state to resume from")
    tensors = load_tensors(path, check_finite=False)
    with safe_open(str(path), framework="pt") as f:
        md = f.metadata() or {}
    try:
        meta = json.loads(md["meta"])
        groups = json.loads(md["param_groups"])
    except (KeyError, json.JSONDecodeError):
        raise RunError(f"{path}: missing training metadata") from None
    state: dict[int, dict[str, Tensor]] = {}
    extra: dict[str, Tensor] = {}
    for name, t in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = t
        elif name.startswith("extra."):
            extra[name[len("extra."):]] = t
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise RunError(f"{path}: optimizer state does not match the field ({exc})") from None
    generator.set_state(tensors["rng"])
    return meta, extra


def truncate_log(path: Path, step: int) -> None:
    """Drop log.jsonl records written after the checkpoint we resume from (they will be redone)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in keep))
