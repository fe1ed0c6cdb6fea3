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
    prior: Path = typer.Option(None, "--prior", help="prior: diffusers pipeline directory (default assets/prior)."),
    runs_dir: Path = typer.Option(
        None, "--runs-dir",
        help="fit-lego / pvd / mesh: keep the run directories here (default: a temp dir); pvd and mesh reuse "
        "finished runs.",
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
    else:
        raise ConfigError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    jpath, mpath = write_results(name, result, out_dir)
    print(markdown_table(result["rows"]))
    print("summary: " + ", ".join(f"{k}={v}" for k, v in result["summary"].items()))
    print(f"wrote {jpath} and {mpath}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
