"""`v3kd bench lucid`: LucidDreaming layouts against plain SDS on the joined prompt (registered on `bench_app`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .bench import (
    _OUT_DIR,
    _PRIOR,
    _QUICK,
    _at_least,
    _bench_runs,
    _report,
    _split_and_methods,
    _split_name,
    bench_app,
)

__all__ = ["lucid_command"]


@bench_app.command("lucid")
def lucid_command(
    quick: bool = _QUICK,
    prior: Path = _PRIOR,
    seeds: int = typer.Option(None, "--seeds", help="Seeds per layout and method (default 3; with --quick 1)."),
    steps: int = typer.Option(None, "--steps", help="Generation steps per run (default: the sds config's; with "
                              "--quick 40)."),
    methods: str = typer.Option(None, "--methods", help="Comma-separated subset of lucid, joined (default: both)."),
    split: str = typer.Option("validation", "--split", help="validation (layouts defaults are chosen on) or test "
                              "(other families and colours; run once defaults are chosen)."),
    sets: list[str] = typer.Option(None, "--set", help="SECTION.KEY=VALUE override of every run's config "
                                   "(repeatable, as in `v3kd generate`); the runs folder and report are "
                                   "suffixed +KEY=VALUE."),
    layouts: str = typer.Option(None, "--layouts", help="Comma-separated 1-based numbers of the split's layouts to "
                                "run (default: all); the report is suffixed @NUMBERS."),
    runs_dir: Path = _bench_runs("lucid/SPLIT[+SETS]"),
    out_dir: Path = _OUT_DIR,
) -> None:
    """Multi-object layouts: LucidDreaming vs plain SDS on the joined prompt, several seeds.

    Per object: share of its density mass inside its box, mask IoU against the true object in its box,
    colour error, asymmetric part; per run: every object in the exported GLB, minutes."""
    from ..bench.lucid import METHODS, SPLITS, pick_layouts, run, sets_suffix
    from ..config import parse_overrides
    from ..generation.config import SECTIONS

    _at_least("--seeds", seeds)
    _at_least("--steps", steps)
    chosen = _split_and_methods(split, SPLITS, methods, METHODS)
    parse_overrides(list(sets or []), SECTIONS)
    only = pick_layouts(split, layouts)
    result = run(quick=quick, prior_path=prior, runs_dir=runs_dir, seeds=seeds, steps=steps, methods=chosen,
                 split=split, sets=list(sets or []), layouts=only)
    subset = "@" + ",".join(str(k) for k in only) if only else ""
    _report(_split_name("lucid", split, quick) + sets_suffix(sets) + subset, result, out_dir)
