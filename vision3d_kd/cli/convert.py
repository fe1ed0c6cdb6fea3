"""`v3kd convert RUN --to FAMILY --out RUN2 [--active]`: Progressive Volume Distillation between field
families and Gaussian splats."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..errors import ConfigError
from .common import pick_device

__all__ = ["register", "convert_command"]

TARGETS = ("mlp", "hashgrid", "tensorf-vm", "tensorf-cp", "grid", "splats")


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
    from ..data import held_out_split, load_dataset
    from ..distill.convert_config import load_convert_config
    from ..distill.teacher import load_teacher

    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    if not resume and out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: already exists and is not empty (use --resume or another --out)")
    flags = {"steps": steps, "max_seconds": max_seconds}
    cfg, fit_cfg = load_convert_config(to, config, [*overrides, *(f"train.{k}={v}" for k, v in flags.items()
                                                                   if v is not None)])
    cfg.active = cfg.active or active
    dev = pick_device(device)
    teacher = load_teacher(run, dev)  # one-line RunError before anything is written
    data_path = Path(data) if data else (Path(teacher.config["data"]) if teacher.config.get("data") else None)
    train_ds = load_dataset(data, "train", fit_cfg.train.downscale) if data else None
    test_ds = None
    if data_path is not None and data_path.is_dir() and held_out_split(data_path):
        test_ds = load_dataset(data_path, held_out_split(data_path), fit_cfg.train.downscale)
    console = Console(stderr=True)
    console.print(f"convert {teacher.model.name} {run} -> {to} {out}{' (PVD-AL)' if cfg.active else ''}"
                  f"{'' if test_ds else '; no real test views (teacher data unknown)'}")
    if to == "splats":
        from ..distill.to_splats import convert_to_splats

        metrics = convert_to_splats(teacher, out, cfg, fit_cfg, test_ds, resume=resume, device=dev,
                                    show_progress=progress)
    else:
        from ..distill.pvd import convert_to_field

        metrics = convert_to_field(teacher, to, out, cfg, fit_cfg, train_ds, test_ds, resume=resume, device=dev,
                                   show_progress=progress)
    line = f"{teacher.model.name} -> {to}: {metrics['steps']} steps in {metrics['seconds']:.0f} s"
    line += f"; PSNR vs teacher {metrics['psnr_vs_teacher']:.2f} dB"
    if "psnr_test" in metrics:
        line += f"; test PSNR {metrics['psnr_test']:.2f} dB"
    print(line)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
