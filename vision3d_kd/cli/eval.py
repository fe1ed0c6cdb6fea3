"""`v3kd eval RUN --data DATA`: render held-out views of a run and score them."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import pick_device

__all__ = ["register", "eval_command"]


def eval_command(
    run: Path = typer.Argument(..., help="Run directory written by `v3kd fit`."),
    data: Path = typer.Option(None, "--data", help="Dataset folder (default: the one the run was fitted on)."),
    split: str = typer.Option(None, "--split", help="Split to score (default: test, else val)."),
    background: str = typer.Option("white", "--background", help="Background for renders and targets: white or black."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    align_poses: int = typer.Option(
        0, "--align-poses",
        help="First align each held-out camera to its image with the field frozen, this many steps (e.g. 100; "
             "fields only): for poses that are estimates (SfM), so the score is not the pose error. 0 = off.",
    ),
) -> None:
    """Print and write RUN/metrics.json with psnr_<split>, ssim_<split> on held-out views."""
    from ..evaluate import evaluate_run

    split, ev = evaluate_run(run, data, split, background, pick_device(device), align_poses)
    aligned = f" (cameras aligned, moved {ev['align_rot_deg_mean']:.3f} deg on average)" if align_poses else ""
    print(f"{run}: {split} PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f} over {ev['n_views']} views{aligned}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
