"""`v3kd convert RUN --to FAMILY --out RUN2 [--active]`: Progressive Volume Distillation between field
families and Gaussian splats."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..distill.convert_config import TARGETS
from ..errors import ConfigError
from .common import pick_device

__all__ = ["register", "convert_command"]


def convert_command(
    run: Path = typer.Argument(..., help="Teacher run directory (from `v3kd fit` or `v3kd convert`)."),
    to: str = typer.Option(..., "--to", help="Student family: " + ", ".join(TARGETS) + "."),
    out: Path = typer.Option(..., "--out", "-o", help="Student run directory to create."),
    active: bool = typer.Option(False, "--active", help="PVD-AL: mine hard cameras, rays and samples."),
    data: Path = typer.Option(
        None, "--data", help="Optional dataset: mix its training pixels into the batches (default: data-free)."
    ),
    steps: int = typer.Option(None, "--steps", help="Optimisation steps (default: the student's fit config)."),
    max_seconds: float = typer.Option(
        None, "--max-seconds", help="Wall-clock budget in seconds (default 300, configs/convert/default.yaml)."
    ),
    config: Path = typer.Option(None, "--config", help="YAML replacing configs/convert/default.yaml."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override: convert.KEY=VALUE, train.KEY=VALUE or field.KEY=VALUE (repeatable)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the conversion in --out from its checkpoint."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Distil a fitted run into another field family or into Gaussian splats (data-free by default);
    writes RUN2 like `v3kd fit` plus metrics.json with PSNR against the teacher on held-out virtual
    views and, when the teacher's dataset is known, PSNR on its real test views."""
    from ..distill.convert import convert_run
    from ..distill.convert_config import load_convert_config

    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    flags = {"steps": steps, "max_seconds": max_seconds}
    cfg, fit_cfg = load_convert_config(to, config, [*overrides, *(f"train.{k}={v}" for k, v in flags.items()
                                                                   if v is not None)])
    cfg.active = cfg.active or active
    console = Console(stderr=True)
    metrics = convert_run(run, out, cfg, fit_cfg, data, resume=resume, device=pick_device(device),
                          show_progress=progress, log=console.print)
    line = f"{metrics['teacher']} -> {to}: {metrics['steps']} steps in {metrics['seconds']:.0f} s"
    line += f"; PSNR vs teacher {metrics['psnr_vs_teacher']:.2f} dB"
    if "psnr_test" in metrics:
        line += f"; test PSNR {metrics['psnr_test']:.2f} dB"
    print(line)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
