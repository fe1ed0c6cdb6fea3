"""`v3kd bench scale`: 1 vs 2 CPU processes (data-parallel fit), the all-reduce volume, batches on local and
Ray (registered on `bench_app`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .bench import _OUT_DIR, _QUICK, _at_least, _report, bench_app

__all__ = ["scale_command"]


@bench_app.command("scale")
def scale_command(
    quick: bool = _QUICK,
    steps: int = typer.Option(None, "--steps", help="Fit steps per setting (default 600; with --quick 60)."),
    jobs: int = typer.Option(4, "--jobs", help="Generate jobs per batch engine."),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Data parallelism on this machine: the DDP gradient check, a hash-grid fit in 1 process (1 and 2 threads)
    and 2 torchrun ranks with the same global batch (PSNR, steps/s, parallel efficiency), the gradient bytes a
    step all-reduces, and jobs per hour of a batch on the local and Ray engines."""
    from ..bench.scale import run

    _at_least("--steps", steps)
    _at_least("--jobs", jobs)
    _report("scale" + ("-quick" if quick else ""), run(quick=quick, steps=steps, jobs=jobs), out_dir)
