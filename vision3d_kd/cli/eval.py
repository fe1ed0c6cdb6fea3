"""`v3kd eval RUN --data DATA`: render held-out views of a run and score them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import ConfigError
from .common import pick_device

__all__ = ["register", "eval_command"]


def eval_command(
    run: Path = typer.Argument(..., help="Run directory written by `v3kd fit`."),
    data: Path = typer.Option(None, "--data", help="Dataset folder (default: the one the run was fitted on)."),
    split: str = typer.Option(None, "--split", help="Split to score (default: test, else val)."),
    background: str = typer.Option("white", "--background", help="Background for renders and targets: white or black."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Print and write RUN/metrics.json with psnr_<split>, ssim_<split> on held-out views."""
    from ..checkpoint import write_json
    from ..data import held_out_split, load_dataset
    from ..evaluate import evaluate_field
    from ..runs import load_run, render_settings_from

    if background not in ("white", "black"):
        raise ConfigError(f"--background must be white or black, got {background!r}")
    dev = pick_device(device)
    field, grid, cfg = load_run(run, dev)
    data = data or (Path(cfg["data"]) if cfg.get("data") else None)
    if data is None:
        raise ConfigError(f"{run}: the run does not record its dataset; pass --data")
    split = split or held_out_split(data)
    if split is None:
        raise ConfigError(f"{data}: no test or val split to evaluate on (pass --split)")
    ds = load_dataset(data, split, int(cfg.get("fit", {}).get("train", {}).get("downscale", 1)))
    ev = evaluate_field(field, ds, grid, render_settings_from(cfg), background, save_dir=Path(run) / "renders")
    path = Path(run) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.update({f"psnr_{split}": ev["psnr"], f"ssim_{split}": ev["ssim"], f"n_{split}_views": ev["n_views"]})
    write_json(path, metrics)
    print(f"{run}: {split} PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} over {ev['n_views']} views")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
