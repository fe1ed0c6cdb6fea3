"""Run directories: read and write what every command leaves in RUN/.

RUN/config.json (the model's config under "field", plus whatever made the run: "fit", "generate",
"convert", "render" settings, data path), RUN/weights.safetensors, RUN/occupancy.safetensors (fields
rendered with an occupancy grid), RUN/metrics.json and RUN/log.jsonl. Weights are read from
safetensors only and refused when they hold NaN/inf.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CONFIG, WEIGHTS, load_tensors, read_config, save_tensors, write_json
from .errors import ConfigError, RunError
from .fields import build_field
from .render.occupancy import OccupancyGrid
from .render.volume import RenderConfig

__all__ = ["OCCUPANCY", "METRICS", "save_field", "load_field", "load_run", "save_occupancy", "render_settings_from",
           "data_options_from", "capture_transform",
           "update_metrics"]

OCCUPANCY = "occupancy.safetensors"
METRICS = "metrics.json"


def _json_safe(obj: Any) -> Any:
    """`obj` with non-finite floats replaced by None (JSON has no NaN/inf)."""
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
    """Load the model of a run directory (safetensors only; NaN weights refused). Returns (model, config)."""
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


def save_occupancy(run: Path, grid: OccupancyGrid) -> None:
    """Write RUN/occupancy.safetensors."""
    save_tensors(Path(run) / OCCUPANCY, grid.state_dict())


def load_run(run: Path, device: torch.device | str = "cpu") -> tuple[Any, OccupancyGrid | None, dict[str, Any]]:
    """(model in eval mode on `device`, its occupancy grid or None, config) of a run directory."""
    field, cfg = load_field(run)
    field = field.to(device).eval()
    grid = None
    occ_path = Path(run) / OCCUPANCY
    if occ_path.is_file():
        t = load_tensors(occ_path)
        res = int(round(t["density"].numel() ** (1 / 3)))
        grid = OccupancyGrid(field.aabb.cpu(), res, contract=getattr(field, "contract", False)).to(device)
        try:
            grid.load_state_dict(t)
        except RuntimeError as exc:
            raise RunError(f"{occ_path}: does not match the field ({str(exc).splitlines()[-1].strip()})") from None
    return field, grid, cfg


def render_settings_from(cfg: dict[str, Any]) -> RenderConfig:
    """RenderConfig stored in a run's config.json (`render` section)."""
    return RenderConfig(step_size=float(cfg.get("render", {}).get("step_size", 0.01)))


def data_options_from(cfg: dict[str, Any]) -> dict[str, Any]:
    """`data.load_dataset` keyword arguments a run was fitted with (downscale, undistort, scene), so
    evaluation and conversion read its dataset in the same frame; older runs: downscale only."""
    train = cfg.get("fit", {}).get("train", {}) if isinstance(cfg.get("fit"), dict) else {}
    return {"downscale": int(train.get("downscale", 1)), "undistort": bool(train.get("undistort", True)),
            "scene": str(train.get("scene", "auto"))}


def capture_transform(cfg: dict[str, Any]) -> torch.Tensor:
    """The 4x4 similarity (float64) from the capture's own frame to the run's model frame (`frame` section
    of config.json; identity for runs on data that was not normalised, or written before it existed)."""
    t = cfg.get("frame", {}).get("transform") if isinstance(cfg.get("frame"), dict) else None
    return torch.eye(4, dtype=torch.float64) if t is None else torch.tensor(t, dtype=torch.float64)


def update_metrics(run: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge `values` into RUN/metrics.json (created when missing; atomic); returns the merged metrics."""
    path = Path(run) / METRICS
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.update(values)
    write_json(path, metrics)
    return metrics
