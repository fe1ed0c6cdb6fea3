"""Convert a run into another field family or Gaussian splats (what `v3kd convert` does): load the teacher,
find its data for real test views, then PVD (`pvd.convert_to_field`) or field -> splats
(`to_splats.convert_to_splats`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..data import held_out_split, load_dataset
from ..errors import ConfigError
from ..runs import data_options_from
from ..train.config import FitConfig
from .convert_config import TARGETS, ConvertConfig
from .pvd import convert_to_field
from .teacher import load_teacher
from .to_splats import convert_to_splats

__all__ = ["TARGETS", "convert_run"]


def convert_run(run: Path, out: Path, cfg: ConvertConfig, fit_cfg: FitConfig, data: Path | None = None,
                resume: bool = False, device: torch.device | str = "cpu", show_progress: bool = True,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Distil teacher run `run` into a new run `out` of family `fit_cfg.field_name` (one of TARGETS; `cfg`,
    `fit_cfg` from `load_convert_config`), data-free unless `data` (a dataset whose training pixels are mixed
    into the batches). Test views: the held-out split of `data`, else of the teacher's dataset when it is
    known. `out` must be new or empty unless `resume`. `log` gets a one-line summary before training.
    Returns the metrics also in RUN/metrics.json (psnr_vs_teacher on held-out virtual views, psnr_test)."""
    to, out = fit_cfg.field_name, Path(out)
    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    if not resume and out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: already exists and is not empty (use --resume or another --out)")
    teacher = load_teacher(run, device)  # one-line RunError before anything is written
    data_path = Path(data) if data else (Path(teacher.config["data"]) if teacher.config.get("data") else None)
    # the teacher's frame (undistortion, scene) at the student's downscale
    options = {**data_options_from(teacher.config), "downscale": fit_cfg.train.downscale}
    train_ds = load_dataset(data, "train", **options) if data else None
    test_ds = None
    split = held_out_split(data_path) if data_path is not None and data_path.is_dir() else None
    if split:
        test_ds = load_dataset(data_path, split, **options)
    if log is not None:
        log(f"convert {teacher.model.name} {run} -> {to} {out}{' (PVD-AL)' if cfg.active else ''}"
            f"{'' if test_ds else '; no real test views (teacher data unknown)'}")
    if to == "splats":
        return convert_to_splats(teacher, out, cfg, fit_cfg, test_ds, resume=resume, device=device,
                                 show_progress=show_progress)
    return convert_to_field(teacher, to, out, cfg, fit_cfg, train_ds, test_ds, resume=resume, device=device,
                            show_progress=show_progress)
