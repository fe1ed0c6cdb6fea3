"""`v3kd fit DATA --field F --out RUN`: train a radiance field and report held-out PSNR/SSIM."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..errors import ConfigError
from ..parallel import device_for, dist_env, init_distributed, leave_distributed
from ..train.config import apply_overrides, load_fit_config, saved_fit_config
from .common import pick_device

__all__ = ["register", "fit_command"]


def fit_command(
    data: Path = typer.Argument(
        ..., help="Dataset folder: Blender (transforms_*.json), nerfstudio / Instant-NGP (transforms.json) or COLMAP."
    ),
    field: str = typer.Option(
        "hashgrid", "--field", "-f",
        help="Field family: mlp, hashgrid, tensorf-vm, tensorf-cp, grid, or splats (3D Gaussian splatting).",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory to create (default runs/<data>-<field>)."),
    steps: int = typer.Option(None, "--steps", help="Optimisation steps (default from the field's config)."),
    max_seconds: float = typer.Option(None, "--max-seconds", help="Wall-clock budget for training in seconds."),
    seed: int = typer.Option(None, "--seed", help="Random seed (default 0)."),
    downscale: int = typer.Option(None, "--downscale", help="Integer image downscale factor."),
    scene: str = typer.Option(
        None, "--scene",
        help="auto (default: opaque photos are unbounded, images with alpha or masks bounded), bounded, or "
             "unbounded (contract the background into the field: hashgrid, grid, tensorf-vm, tensorf-cp).",
    ),
    undistort: bool = typer.Option(
        None, "--undistort/--no-undistort",
        help="Undistort captured images with their lens model (default on; off ignores it, for comparison).",
    ),
    refine_poses: bool = typer.Option(
        None, "--refine-poses/--no-refine-poses",
        help="Learn a small rotation + translation per training image (fields: hashgrid, mlp): for poses that are "
             "estimates (v3kd data process, phone apps). Held-out views are then also scored after aligning their "
             "cameras (psnr_test_aligned). Default off.",
    ),
    refine_intrinsics: bool = typer.Option(
        None, "--refine-intrinsics/--no-refine-intrinsics",
        help="Learn a focal-length scale and principal-point shift per camera (fields: hashgrid, mlp): for "
             "intrinsics that are estimates (v3kd data process); held-out views of the same camera use them. "
             "Default off.",
    ),
    config: Path = typer.Option(None, "--config", help="YAML file replacing the field's default config."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config value: field.KEY=VALUE or train.KEY=VALUE (repeatable)."
    ),
    init: str = typer.Option(
        None, "--init", help="splats: initialise from a fitted field RUN or a .ply/.splat/.spz point/splat file."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fit a radiance field to posed images; writes RUN/{config.json, weights.safetensors, log.jsonl, metrics.json}."""
    from ..train.fit import default_run_dir, fit_dataset

    out = out or default_run_dir(data, field)
    if init is not None and field != "splats" and not resume:
        raise ConfigError("--init applies to --field splats")
    cfg = saved_fit_config(out) if resume else load_fit_config(field, config)
    flags = {"steps": steps, "max_seconds": max_seconds, "seed": seed, "downscale": downscale, "init": init,
             "scene": scene, "undistort": undistort, "refine_poses": refine_poses,
             "refine_intrinsics": refine_intrinsics}
    cfg = apply_overrides(cfg, [*overrides, *(f"train.{k}={v}" for k, v in flags.items() if v is not None)])
    console = Console(stderr=True)

    def log(line: str) -> None:
        console.print(f"[yellow]{line}[/]" if line.startswith("warning:") else line)

    dist = dist_env()  # under torchrun: one rank of a data-parallel fit (gloo on CPU, NCCL on GPU)
    init_distributed(dist)
    dev = pick_device(device) if not dist.distributed else device_for(dist, device)
    split, metrics = fit_dataset(data, out, cfg, resume=resume, device=dev, dist=dist,
                                 show_progress=progress, log=log if dist.writer else None)
    leave_distributed()
    if not dist.writer:
        return
    line = f"{cfg.field_name}: {metrics['steps']} steps in {metrics['seconds']:.0f} s"
    if "psnr_test" in metrics:
        line += f"; {split} PSNR {metrics['psnr_test']:.2f} dB, SSIM {metrics['ssim_test']:.4f}"
    if "psnr_test_aligned" in metrics:
        line += f" ({metrics['psnr_test_aligned']:.2f} dB with the held-out cameras aligned)"
    print(line)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_command)
