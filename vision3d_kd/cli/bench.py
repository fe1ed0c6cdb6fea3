"""`v3kd bench BENCHMARK [OPTIONS]`: run one benchmark and write OUT_DIR/BENCHMARK.{json,md}.

One subcommand per benchmark, each with only its own options (all take --quick and --out-dir). The work
is `vision3d_kd.bench.<name>.run`; a subcommand checks its options, calls it once and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import ConfigError

__all__ = ["bench_app"]

bench_app = typer.Typer(
    help="Run a benchmark: one subcommand each; results go to OUT_DIR/NAME.json and NAME.md.\n\n"
    "NAME.json holds {rows, summary, command, machine}; NAME.md the same as Markdown tables.",
    no_args_is_help=True,
)

# Options several benchmarks share (typer reads them as the parameters' defaults).
_QUICK = typer.Option(False, "--quick", help="Small sizes and budgets: a smoke run of minutes (default: off).")
_OUT_DIR = typer.Option(Path("bench/results"), "--out-dir", help="Folder for NAME.json and NAME.md.")
_DATA = typer.Option(None, "--data", help="The lego folder (default: ../shared/data/nerf_synthetic_lego_200).")
_PRIOR = typer.Option(None, "--prior", help="The prior: a diffusers pipeline directory (default: the bundled prior).")


def _runs_dir(text: str) -> Any:
    return typer.Option(None, "--runs-dir", help=text)


def _kept_runs(reuse: bool) -> Any:
    return _runs_dir("Keep the run directories here (default: a new temporary directory)"
                     + ("; finished runs in it are reused." if reuse else "."))


def _bench_runs(name: str) -> Any:
    return _runs_dir(f"Where the runs live (default: bench/runs/{name}); finished runs are reused, interrupted "
                     "ones resumed.")


def _budget(full: float, quick: float, what: str = "Training seconds per field") -> Any:
    return typer.Option(None, "--budget", help=f"{what} (default {full:g}; with --quick {quick:g}).")


def _positive(option: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{option} must be > 0 (got {value:g})")


def _at_least(option: str, value: int | None, least: int = 1) -> None:
    """A one-line ConfigError unless `value` (None: not given) is at least `least`."""
    if value is not None and value < least:
        raise ConfigError(f"{option} must be >= {least} (got {value})")


def _known(option: str, names: list[str], known, what: str) -> list[str]:
    bad = [n for n in names if n not in known]
    if bad or not names:
        problem = f"unknown {what} {', '.join(bad)}" if bad else f"no {what} given"
        raise ConfigError(f"{option}: {problem} (choose from {', '.join(known)})")
    return names


def _name_list(option: str, text: str | None, known, what: str) -> list[str] | None:
    """A comma-separated list checked against `known`; None when the option was not given."""
    if text is None:
        return None
    return _known(option, [n.strip() for n in text.split(",") if n.strip()], known, what)


def _split_and_methods(split: str, splits, methods: str | None, known) -> list[str] | None:
    """Check --split against `splits`; the --methods list checked against `known` (None: all)."""
    _known("--split", [split], list(splits), "split")
    return _name_list("--methods", methods, list(known), "method(s)")


def _variant(sets: list[str], known) -> dict[str, Any]:
    """`KEY=VALUE` strings (values parsed as YAML) -> {key: value}, each key checked against `known`."""
    from ..config import parse_overrides

    if any("=" not in item for item in sets):
        raise ConfigError(f"--set {next(i for i in sets if '=' not in i)!r}: expected KEY=VALUE")
    variant = parse_overrides([f"v.{item}" for item in sets], ("v",))["v"]
    if variant:
        _known("--set", list(variant), known, "variant option(s)")
    return variant


def _split_name(bench: str, split: str, quick: bool) -> str:
    """Report name of a benchmark split: the test split keeps the bench's name, others are suffixed."""
    return (bench if split == "test" else f"{bench}-{split}") + ("-quick" if quick else "")


def _report(name: str, result: dict[str, Any], out_dir: Path) -> None:
    """The common tail: write NAME.json / NAME.md, print the table and the summary."""
    from ..bench.report import markdown_table, write_results

    jpath, mpath = write_results(name, result, out_dir)
    print(markdown_table(result["rows"]))
    print("summary: " + ", ".join(f"{k}={v}" for k, v in result["summary"].items()))
    print(f"wrote {jpath} and {mpath}")


@bench_app.command("kernels")
def kernels_command(quick: bool = _QUICK, out_dir: Path = _OUT_DIR) -> None:
    """Fused CPU kernels vs PyTorch references: samples/s, speed-up.

    Hash encoding, volume grid (ray-ordered and uniform points), TensoRF planes and lines, compositing.
    Forward and forward+backward, fused vs the plain-PyTorch reference."""
    from ..bench.kernels import run

    _report("kernels", run(quick=quick), out_dir)


@bench_app.command("fit-lego")
def fit_lego_command(
    quick: bool = _QUICK,
    data: Path = _DATA,
    budget: float = _budget(780, 45),
    fields: str = typer.Option(None, "--fields", help="Comma-separated subset of the fields to fit (default: "
                               "hashgrid, tensorf-vm, tensorf-cp, grid, mlp, splats)."),
    runs_dir: Path = _kept_runs(reuse=True),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Every field on lego, same time budget: test PSNR/SSIM, memory.

    Each field is fitted by `v3kd fit` in its own process for the same wall-clock budget (--quick: half size).
    Rows: test PSNR/SSIM, seconds, steps, parameters and peak memory per field."""
    from ..bench.fit_lego import run
    from ..fields import MODELS

    _positive("--budget", budget)
    chosen = _name_list("--fields", fields, list(MODELS), "field(s)")
    _report("fit-lego", run(quick=quick, data=data, budget_s=budget, fields=chosen, keep_dir=runs_dir), out_dir)


@bench_app.command("rasterizer")
def rasterizer_command(quick: bool = _QUICK, out_dir: Path = _OUT_DIR) -> None:
    """Splat rasterizer: forward(+backward) time and peak memory.

    10k-300k Gaussians at 200 and 400 px on the fused CPU kernel (and gsplat when CUDA works).
    The torch reference is timed at 10k Gaussians / 200 px."""
    from ..bench.rasterizer import run

    _report("rasterizer", run(quick=quick), out_dir)


@bench_app.command("pvd")
def pvd_command(
    quick: bool = _QUICK,
    data: Path = _DATA,
    budget: float = _budget(540, 40, "Seconds per teacher fit (also each from-scratch curve)"),
    convert_budget: float = typer.Option(None, "--convert-budget", help="Seconds per conversion (default 240; "
                                         "with --quick 30)."),
    runs_dir: Path = _kept_runs(reuse=True),
    out_dir: Path = _OUT_DIR,
) -> None:
    """PVD conversion vs training from scratch on lego: speed-ups.

    Teachers are `v3kd fit` runs with snapshots, which also give the from-scratch learning curves.
    Every field pair is converted with `v3kd convert` and timed to the teacher's PSNR - 0.5 dB.
    Rows: the speed-up of each pair, and PVD vs PVD-AL (--active) at the same budget on hashgrid->mlp."""
    from ..bench.pvd import run

    _positive("--budget", budget)
    _positive("--convert-budget", convert_budget)
    result = run(quick=quick, data=data, budget_s=budget, convert_budget_s=convert_budget, keep_dir=runs_dir)
    _report("pvd", result, out_dir)


@bench_app.command("pvd-al")
def pvd_al_command(
    quick: bool = _QUICK,
    split: str = typer.Option("validation", "--split", help="validation (the procedural composite: choose the "
                              "rules on it) or test (lego: run once they are chosen)."),
    data: Path = _DATA,
    seeds: int = typer.Option(None, "--seeds", help="Seeds per method (default 3; with --quick 1)."),
    steps: int = typer.Option(None, "--steps", help="Conversion steps of every run (default 1500; with --quick "
                              "40)."),
    budget: float = _budget(540, 40, "Seconds of the teacher's fit"),
    methods: str = typer.Option(None, "--methods", help="Comma-separated subset of pvd, al, al-boost, "
                                "pvd-paper-losses (default: all)."),
    runs_dir: Path = _bench_runs("pvd-al/SPLIT"),
    out_dir: Path = _OUT_DIR,
) -> None:
    """PVD vs PVD-AL (the paper's rules, and the boost rules) on hashgrid -> mlp over seeds.

    Every run converts the same teacher for the same steps; rows give held-out PSNR at equal steps and,
    from weight snapshots, at equal time (mean ± std over seeds); the summary the AL gains in dB."""
    from ..bench.pvd_al import METHODS, SPLITS, run

    _positive("--budget", budget)
    _at_least("--seeds", seeds)
    _at_least("--steps", steps)
    chosen = _split_and_methods(split, SPLITS, methods, METHODS)
    result = run(quick=quick, split=split, data=data, keep_dir=runs_dir, seeds=seeds, steps=steps, budget_s=budget,
                 methods=chosen)
    _report(_split_name("pvd-al", split, quick), result, out_dir)


@bench_app.command("mesh")
def mesh_command(
    quick: bool = _QUICK,
    budget: float = _budget(300, 40),
    field: str = typer.Option("hashgrid", "--field", "--fields", help="The field family to fit and mesh."),
    runs_dir: Path = _kept_runs(reuse=True),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Meshes of fitted SDF scenes vs the true surface: Chamfer, colour.

    Each shape: `v3kd data scene`, `v3kd fit`, `v3kd export --format glb`.
    The GLB is scored against the exact SDF: Chamfer distance (% of the box diagonal), vertex-colour error."""
    from ..bench.mesh import run
    from ..fields import MODELS

    _positive("--budget", budget)
    _known("--field", [field], list(MODELS), "field")
    _report("mesh", run(quick=quick, budget_s=budget, field=field, keep_dir=runs_dir), out_dir)


@bench_app.command("prior")
def prior_command(
    quick: bool = _QUICK,
    prior: Path = _PRIOR,
    objects: str = typer.Option(None, "--objects", help="Comma-separated 'COLOUR FAMILY' objects to sample (e.g. "
                                "'brown table,gray table'; rows per object, report prior-objects) instead of the "
                                "held-out pairs."),
    n_pairs: int = typer.Option(None, "--pairs", help="Samples in all (default 60; --quick 10)."),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Diffusion prior samples vs true renders: IoU, colour, view.

    Mask IoU, colour error and view correctness on 60 held-out prompt x view pairs (--quick: 10).
    The samples also go to OUT_DIR/prior_samples.png."""
    from ..bench.prior import chosen_pairs, run

    _at_least("--pairs", n_pairs)
    chosen = [o.strip() for o in objects.split(",") if o.strip()] if objects is not None else None
    if chosen is not None:
        chosen_pairs(chosen, 1)  # a bad object is one line before any model loads
    name = "prior-objects" if chosen else "prior"
    _report(name, run(quick=quick, prior_path=prior, n_pairs=n_pairs, objects=chosen,
                      grid_path=out_dir / f"{name}_samples.png"), out_dir)


@bench_app.command("prior-cost")
def prior_cost_command(
    quick: bool = _QUICK,
    shapes: str = typer.Option(None, "--shapes", help="Comma-separated: sd15, sdxl (default both)."),
    dtypes: str = typer.Option(None, "--dtypes", help="Comma-separated: fp32, fp16, bf16 (default fp32,bf16)."),
    out_dir: Path = _OUT_DIR,
) -> None:
    """One SDS / VSD / BSD step with SD-1.5- and SDXL-shaped priors: seconds, peak memory.

    Random weights at the real shapes (512 px, 64x64 latents), each row in its own process; fp32 vs bf16;
    plus how far fp16 / bf16 SDS gradients are from fp32's (--quick: 1/10 width, 128 px)."""
    from ..bench.prior_cost import SHAPES, run
    from ..guidance.pipeline_files import DTYPES

    picked = _name_list("--shapes", shapes, list(SHAPES), "shape(s)")
    kinds = _name_list("--dtypes", dtypes, list(DTYPES), "dtype(s)")
    _report("prior-cost", run(quick=quick, shapes=picked, dtypes=kinds), out_dir)


@bench_app.command("text-to-3d")
def text_to_3d_command(
    quick: bool = _QUICK,
    prior: Path = _PRIOR,
    seeds: int = typer.Option(None, "--seeds", help="Seeds per prompt and method (default 3; with --quick 2)."),
    steps: int = typer.Option(None, "--steps", help="Generation steps per run (default: each method's config; "
                              "with --quick 60)."),
    methods: str = typer.Option(None, "--methods", help="Comma-separated subset of sds, vsd, bsd (default: all)."),
    sets: list[str] = typer.Option(None, "--set", help="SECTION.KEY=VALUE override of every run's config "
                                   "(repeatable, as in `v3kd generate`); give such runs their own --runs-dir "
                                   "and --out-dir (default: none)."),
    split: str = typer.Option("validation", "--split", help="validation (the nine prompts defaults were chosen "
                              "on) or test (the same families in other colours; run once defaults are chosen)."),
    runs_dir: Path = _bench_runs("text-to-3d/SPLIT"),
    out_dir: Path = _OUT_DIR,
) -> None:
    """SDS vs VSD vs BSD on the prior's prompts over several seeds.

    Every prompt x method x seed is one generation run, as `v3kd generate` (--quick: 2 prompts, 2 seeds).
    Scores: multi-view IoU vs the true object, colour error, saturation, diversity, Janus rate, minutes."""
    from ..bench.text_to_3d import run
    from ..config import parse_overrides
    from ..generation.config import SECTIONS
    from ..guidance.sds import METHODS

    _at_least("--seeds", seeds)
    _at_least("--steps", steps)
    chosen = _name_list("--methods", methods, METHODS, "method(s)")
    parse_overrides(list(sets or []), SECTIONS)  # a malformed --set fails here, before any run starts
    from ..bench.text_to_3d import SPLITS

    _known("--split", [split], list(SPLITS), "split")
    result = run(quick=quick, prior_path=prior, runs_dir=runs_dir, seeds=seeds, steps=steps, methods=chosen,
                 sets=sets, split=split)
    _report(_split_name("text-to-3d", split, quick), result, out_dir)


@bench_app.command("exports")
def exports_command(
    quick: bool = _QUICK,
    data: Path = _DATA,
    resolution: int = typer.Option(None, "--resolution", help="Mesh lattice points per axis (default 256; quick 128)."),
    runs_dir: Path = _bench_runs("exports"),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Exports timed and opened by other software: lego GLB at 256³ (seconds per stage), gltf-validator,
    three.js and GaussianSplats3D in headless Chromium against our own renders."""
    from ..bench.exports import run

    _at_least("--resolution", resolution)
    _report("exports" + ("-quick" if quick else ""), run(quick, data, runs_dir, resolution), out_dir)


@bench_app.command("capture")
def capture_command(
    quick: bool = _QUICK,
    split: str = typer.Option("validation", "--split", help="validation (the torus scene: tune on it) or test "
                              "(the composite scene: run once defaults are chosen)."),
    budget: float = _budget(900, 60, "Training seconds per fit"),
    seeds: int = typer.Option(None, "--seeds", help="Seeds per method (default 3; with --quick 1)."),
    methods: str = typer.Option(None, "--methods", help="Comma-separated subset of capture, naive, splats, sfm, "
                                "sfm-intrinsics (default: all)."),
    sfm: bool = typer.Option(True, "--sfm/--no-sfm", help="Run structure from motion on the images and fit on its "
                             "poses with pose refinement (sfm; sfm-intrinsics also refines intrinsics); --no-sfm "
                             "drops both."),
    runs_dir: Path = _bench_runs("capture/SPLIT"),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Real captures on ground truth: a procedural object in a textured room through distorting lenses.

    Hash grid with undistortion + contraction vs distortion ignored and bounded vs splats from the sparse
    points (held-out PSNR, mean ± std over seeds); SfM pose errors; fitting on SfM poses (with pose
    refinement, held-out cameras also scored aligned) vs the true ones."""
    from ..bench.capture import METHODS, SPLITS, run

    _positive("--budget", budget)
    _at_least("--seeds", seeds)
    chosen = _split_and_methods(split, SPLITS, methods, METHODS)
    result = run(quick=quick, split=split, budget_s=budget, seeds=seeds, runs_dir=runs_dir, methods=chosen, sfm=sfm,
                 progress=print)
    _report(_split_name("capture", split, quick), result, out_dir)


@bench_app.command("prompts")
def prompts_command(
    quick: bool = _QUICK,
    split: str = typer.Option("validation", "--split", help="validation (tune on it); test to test8 "
                              "(spent: written blind, each run once; a new blind split comes next)."),
    seeds: int = typer.Option(None, "--seeds", help="Seeds per object and phrasing (default 3; with --quick 1)."),
    steps: int = typer.Option(None, "--steps", help="Generation steps per run (default: SDS's config; with "
                              "--quick 60)."),
    runs_dir: Path = _bench_runs("prompts/SPLIT"),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Paraphrased prompts with the bundled prior: plain, synonym and reordered phrasings of each object.

    Scores: multi-view IoU against the true object per phrasing (iou_plain, iou_paraphrase), the share of
    unknown-word prompts refused, and the floater share of rendered opacity before and after pruning."""
    from ..bench.prompts import SPLITS, run

    _at_least("--seeds", seeds)
    _at_least("--steps", steps)
    _known("--split", [split], list(SPLITS), "split")
    result = run(quick=quick, split=split, seeds=seeds, steps=steps, runs_dir=runs_dir, progress=print)
    _report(_split_name("prompts", split, quick), result, out_dir)
