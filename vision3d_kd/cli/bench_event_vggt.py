"""`v3kd bench event-vggt`: the EventVGGT ablation on held-out simulated streets (registered on `bench_app`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .bench import (
    _OUT_DIR,
    _QUICK,
    _at_least,
    _bench_runs,
    _known,
    _name_list,
    _report,
    _split_name,
    _variant,
    bench_app,
)

__all__ = ["event_vggt_command"]


@bench_app.command("event-vggt")
def event_vggt_command(
    quick: bool = _QUICK,
    teacher: Path = typer.Option(None, "--teacher", help="Teacher run (default: the bundled teacher)."),
    steps: int = typer.Option(None, "--steps", help="Training steps per student (default 1500; with --quick 60)."),
    split: str = typer.Option("validation", "--split", help="validation (streets 6000..: choose defaults on "
                              "them) or test (streets 5000..: run once defaults are chosen)."),
    seeds: int = typer.Option(None, "--seeds", help="Training seeds per student (default 3; with --quick 1)."),
    sets: list[str] = typer.Option(None, "--set", help="KEY=VALUE: a variant of the students' settings (e.g. "
                                   "stfd_mode=tokens, init=random, w_tcd=0.5; repeatable); its runs and report "
                                   "are suffixed +KEY=VALUE (default: none, the defaults)."),
    rows: str = typer.Option(None, "--rows", help="Comma-separated subset of the rows' run folders: gt, "
                             "output_only, stfd, stfd_cmfm, full (default: all)."),
    runs_dir: Path = _bench_runs("event-vggt"),
    out_dir: Path = _OUT_DIR,
) -> None:
    """EventVGGT ablation on held-out simulated streets: depth errors, mean ± std over seeds.

    Rows: the teacher on RGB, a ground-truth student, output-only distillation, +STFD, +CMFM, +TCD.
    Scores: errors at 10/20/30 m (median-scaled; err30_raw unscaled), Abs Rel, delta, temporal jitter and
    training minutes. Students are trained once per seed and scored on either split."""
    from ..bench.event_vggt import ROWS, SPLITS, VARIANT_KEYS, run, variant_suffix

    _at_least("--steps", steps)
    _at_least("--seeds", seeds)
    _known("--split", [split], list(SPLITS), "split")
    picked = _name_list("--rows", rows, [folder for _, folder, _ in ROWS], "row(s)")
    variant = _variant(sets or [], VARIANT_KEYS)
    result = run(quick=quick, teacher_path=teacher, runs_dir=runs_dir, steps=steps, split=split, seeds=seeds,
                 variant=variant or None, rows=picked)
    _report(_split_name("event-vggt", split, quick) + variant_suffix(variant), result, out_dir)
