"""`v3kd bench NAME [--quick]`: run a benchmark and write bench/results/NAME.{json,md}."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError

__all__ = ["register", "bench_command", "BENCHMARKS"]

BENCHMARKS = {
    "kernels": "fused CPU kernels vs their PyTorch references (samples/s, speed-up)",
    "fit-lego": "every field on the lego scene with the same wall-clock budget (test PSNR/SSIM)",
    "rasterizer": "Gaussian splat rasterizer fwd / fwd+bwd time and peak memory (10k-300k, 200/400 px)",
    "pvd": "Progressive Volume Distillation vs training from scratch on lego (speed-up per pair, PVD-AL gain)",
    "mesh": "meshes of fitted procedural scenes vs their exact SDF (Chamfer % of diagonal, colour error)",
    "prior": "samples of the diffusion prior on held-out prompt x view pairs vs ground-truth renders "
             "(mask IoU, colour error, view correctness)",
    "text-to-3d": "SDS / VSD / BSD side by side on prompts of the prior's world, several seeds (multi-view IoU vs "
                  "the true object, colour error, saturation, diversity, Janus rate, minutes per object)",
    "event-vggt": "EventVGGT ablation on held-out simulated streets: teacher on RGB, ground-truth student, "
                  "output-only, +STFD, +CMFM, +TCD (errors at 10/20/30 m, Abs Rel, delta, temporal jitter, "
                  "training minutes)",
}


def bench_command(
    name: str = typer.Argument(..., help="Benchmark: " + "; ".join(f"{k}: {v}" for k, v in BENCHMARKS.items())),
    quick: bool = typer.Option(False, "--quick", help="Small sizes and budgets (a smoke run, minutes)."),
    out_dir: Path = typer.Option(Path("bench/results"), "--out-dir", help="Where NAME.json and NAME.md go."),
    data: Path = typer.Option(
        None, "--data", help="fit-lego: the lego folder (default ../shared/data/nerf_synthetic_lego_200)."
    ),
    budget: float = typer.Option(
        None, "--budget", help="fit-lego / pvd / mesh: training seconds per field (default 780 / 540 / 300; "
        "quick 45 / 40 / 40)."
    ),
    convert_budget: float = typer.Option(
        None, "--convert-budget", help="pvd: seconds per conversion (default 240; quick 30)."
    ),
    fields: str = typer.Option(None, "--fields", help="fit-lego: comma-separated subset of fields; mesh: the field "
                               "to fit (default hashgrid)."),
    prior: Path = typer.Option(None, "--prior", help="prior / text-to-3d: diffusers pipeline directory (default "
                               "vision3d_kd/assets/prior)."),
    seeds: int = typer.Option(None, "--seeds", help="text-to-3d: seeds per prompt and method (default 3; quick 2)."),
    steps: int = typer.Option(None, "--steps", help="text-to-3d: generation steps (default: the methods' configs); "
                              "event-vggt: training steps per student (default 1500; quick 60)."),
    teacher: Path = typer.Option(None, "--teacher", help="event-vggt: teacher run (default "
                                 "vision3d_kd/assets/event_teacher)."),
    methods: str = typer.Option(None, "--methods", help="text-to-3d: comma-separated subset of sds,vsd,bsd."),
    sets: list[str] = typer.Option(None, "--set", help="text-to-3d: SECTION.KEY=VALUE override of every run's "
                                   "config (repeatable, as in `v3kd generate`); use its own --runs-dir and --out-dir."),
    runs_dir: Path = typer.Option(
        None, "--runs-dir",
        help="fit-lego / pvd / mesh: keep the run directories here (default: a temp dir); pvd and mesh reuse "
        "finished runs. text-to-3d / event-vggt: where their runs live (default bench/runs/NAME; finished runs "
        "reused, interrupted ones resumed).",
    ),
) -> None:
    """Run benchmark NAME and write its JSON and Markdown table."""
    from ..bench.report import markdown_table, write_results

    if name == "kernels":
        from ..bench.kernels import run as run_kernels

        result = run_kernels(quick=quick)
    elif name == "rasterizer":
        from ..bench.rasterizer import run as run_raster

        result = run_raster(quick=quick)
    elif name == "fit-lego":
        from ..bench.fit_lego import run as run_fit

        if budget is not None and budget <= 0:
            raise ConfigError("--budget must be > 0")
        result = run_fit(
            quick=quick,
            data=data,
            budget_s=budget,
            fields=[f.strip() for f in fields.split(",")] if fields else None,
            keep_dir=runs_dir,
        )
    elif name == "pvd":
        from ..bench.pvd import run as run_pvd

        for value in (budget, convert_budget):
            if value is not None and value <= 0:
                raise ConfigError("--budget and --convert-budget must be > 0")
        result = run_pvd(quick=quick, data=data, budget_s=budget, convert_budget_s=convert_budget,
                         keep_dir=runs_dir)
    elif name == "mesh":
        from ..bench.mesh import run as run_mesh

        if budget is not None and budget <= 0:
            raise ConfigError("--budget must be > 0")
        result = run_mesh(quick=quick, budget_s=budget, field=fields or "hashgrid", keep_dir=runs_dir)
    elif name == "prior":
        from ..bench.prior import run as run_prior

        result = run_prior(quick=quick, prior_path=prior, grid_path=out_dir / "prior_samples.png")
    elif name == "text-to-3d":
        from ..bench.text_to_3d import run as run_t3d

        if (seeds is not None and seeds < 1) or (steps is not None and steps < 1):
            raise ConfigError("--seeds and --steps must be >= 1")
        chosen = [m.strip() for m in methods.split(",")] if methods else None
        bad = [m for m in chosen or [] if m not in ("sds", "vsd", "bsd")]
        if bad:
            raise ConfigError(f"--methods: unknown method(s) {', '.join(bad)} (choose from sds, vsd, bsd)")
        result = run_t3d(quick=quick, prior_path=prior, runs_dir=runs_dir, seeds=seeds, steps=steps, methods=chosen,
                         sets=sets)
    elif name == "event-vggt":
        from ..bench.event_vggt import run as run_event

        if steps is not None and steps < 1:
            raise ConfigError("--steps must be >= 1")
        result = run_event(quick=quick, teacher_path=teacher, runs_dir=runs_dir, steps=steps)
    else:
        raise ConfigError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    jpath, mpath = write_results(name, result, out_dir)
    print(markdown_table(result["rows"]))
    print("summary: " + ", ".join(f"{k}={v}" for k, v in result["summary"].items()))
    print(f"wrote {jpath} and {mpath}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
