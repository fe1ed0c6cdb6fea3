"""`v3kd bench pvd-al`: PVD against PVD-AL on hashgrid -> mlp, several seeds, at equal steps and equal time.

Methods: `pvd` (plain conversion), `al` (`--active` with the paper's code's rules, the default), `al-boost`
(`--active` with this project's first rules: `convert.al_samples=boost`, half the cameras from the hard pool,
a quarter of the rays re-used, ±5° jitter), all three with this project's first losses (mean squared
errors), and `pvd-paper-losses` (plain PVD with the PVD paper's code's loss forms, weights, feature decay and
stage lengths, `v3kd convert`'s defaults since they beat the first ones on both splits). Every method and seed converts
the same hash-grid teacher for the same number of steps (`--steps`), with weight snapshots every `snapshot_s`
seconds:

- equal steps: each run's final PSNR on the scene's held-out views (`psnr_test`, the issue's metric) and
  against the teacher (`psnr_vs_teacher`);
- equal time: each run's PSNR curve (snapshots on the held-out views) read at the shortest mean wall time
  of the methods, so a method whose steps cost more is compared at the time the cheapest one took.

Splits: `validation` (the procedural composite scene, rendered here, its own teacher) is where the rules are
chosen; `test` (the lego scene of ../shared/data) is run once they are. Gains are mean(AL) − mean(PVD) over
seeds; `al_beats_pvd` is true only when the gain exceeds both methods' standard deviations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, RunError
from .fit_lego import default_lego_path
from .pvd import cli, psnr_at, psnr_curve
from .report import mean_std

__all__ = ["run", "METHODS", "SPLITS"]


def _sets(**values: object) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"convert.{key}={value}")]


# The losses each method runs with, pinned so that a change of `v3kd convert`'s defaults does not change what a
# method means: this project's first forms (mean squared errors) and the PVD paper's code's (unsquared L2 norms,
# block weights 0.002, the feature weight x0.995 per step, stages ending at 2k and 5k of 30k iterations: the
# defaults since 2026-12-05)
MSE_LOSSES = _sets(loss_form="mse", density_weight=0.02, feature_weight=0.1, color_weight=1.0, feature_decay=1.0,
                   stage1_end=0.1, stage2_end=0.3)
PAPER_LOSSES = _sets(loss_form="norm", density_weight=0.002, feature_weight=0.002, color_weight=0.002,
                     feature_decay=0.995, stage1_end=round(2 / 30, 4), stage2_end=round(5 / 30, 4))
METHODS: dict[str, list[str]] = {
    "pvd": MSE_LOSSES,
    "al": ["--active", *MSE_LOSSES],
    "al-boost": ["--active", *_sets(al_samples="boost", hard_camera_fraction=0.5, hard_ray_fraction=0.25,
                                    camera_jitter_deg=5), *MSE_LOSSES],
    "pvd-paper-losses": PAPER_LOSSES,
}
SPLITS = ("validation", "test")


def _scene(split: str, base: Path, data: Path | None, quick: bool) -> Path:
    """The split's dataset: the procedural composite rendered under `base` (validation) or lego (test)."""
    if split == "test":
        path = Path(data) if data else default_lego_path()
        if not (path / "transforms_train.json").is_file():
            raise DataError(f"{path}: lego dataset not found (pass --data)")
        return path
    from ..data.procedural import write_scene

    path = base / "data-composite"
    if not (path / "transforms_train.json").is_file():
        n = (30, 5) if quick else (100, 20)
        write_scene("composite", path, n_train=n[0], n_test=n[1], size=64 if quick else 200, seed=7)
    return path


def run(quick: bool = False, split: str = "validation", data: Path | None = None, keep_dir: Path | None = None,
        seeds: int | None = None, steps: int | None = None, budget_s: float | None = None,
        methods: list[str] | None = None, progress=print) -> dict[str, Any]:
    """Fit (or reuse) the teacher, convert with every method x seed, compare; returns {rows, summary}."""
    if split not in SPLITS:
        raise RunError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    base = Path(keep_dir or f"bench/runs/pvd-al/{split}")
    data_dir = _scene(split, base, data, quick)
    n_seeds, steps = seeds or (1 if quick else 3), steps or (40 if quick else 1500)
    budget = budget_s or (40.0 if quick else 540.0)
    methods = methods or list(METHODS)
    teacher = base / "teacher-hashgrid"
    if not (teacher / "metrics.json").is_file():
        progress(f"fitting the hash-grid teacher on {data_dir} ({budget:g} s)")
        cli("fit", str(data_dir), "--field", "hashgrid", "--out", str(teacher), "--max-seconds", str(budget),
            *(["--downscale", "2"] if quick and split == "test" else []))
    snap = max(2.0, budget / 30)
    runs: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        for seed in range(n_seeds):
            out = base / f"{method}-seed{seed}"
            if not (out / "metrics.json").is_file():
                progress(f"{method} seed {seed}: {steps} steps")
                cli("convert", str(teacher), "--to", "mlp", "--out", str(out), "--steps", str(steps),
                    "--set", f"train.seed={seed}", "--set", f"train.snapshot_every_seconds={snap}",
                    *METHODS[method])
            m = json.loads((out / "metrics.json").read_text())
            curve = psnr_curve(out, data_dir, offset=m.get("prepare_seconds", 0.0))
            runs.setdefault(method, []).append({"seed": seed, "psnr_test": m["psnr_test"], "curve": curve,
                                                "psnr_vs_teacher": m["psnr_vs_teacher"], "seconds": curve[-1][0]})
    equal_time = min(float(np.mean([r["seconds"] for r in rs])) for rs in runs.values())
    rows, stats = [], {}
    for method, rs in runs.items():
        at_time = [psnr_at(r["curve"], equal_time) for r in rs]
        at_time = [p for p in at_time if p is not None]
        (ps, ps_std), (pt, pt_std) = mean_std([r["psnr_test"] for r in rs]), mean_std(at_time or [float("nan")])
        stats[method] = (ps, ps_std, pt, pt_std)
        rows.append({"method": method, "seeds": len(rs), "psnr_test": round(ps, 3), "psnr_test_std": round(ps_std, 3),
                     "psnr_vs_teacher": round(float(np.mean([r["psnr_vs_teacher"] for r in rs])), 3),
                     "seconds": round(float(np.mean([r["seconds"] for r in rs])), 1),
                     "psnr_test_equal_time": round(pt, 3), "psnr_test_equal_time_std": round(pt_std, 3),
                     "per_seed": [round(r["psnr_test"], 3) for r in rs]})
    teacher_m = json.loads((teacher / "metrics.json").read_text())
    summary: dict[str, Any] = {"split": split, "seeds": n_seeds, "steps": steps, "equal_time_s": round(equal_time, 1),
                               "teacher_psnr_test": round(teacher_m["psnr_test"], 3),
                               # the rules are chosen on the composite and tested on lego: two different scenes
                               "val_test_disjoint": data_dir.resolve() != (default_lego_path().resolve()
                                                                            if split == "validation" else
                                                                            (base.parent / "validation" /
                                                                             "data-composite").resolve())}
    if "pvd" in stats:
        for method in (m for m in stats if m != "pvd"):
            key = method.replace("-", "_")
            gain = stats[method][0] - stats["pvd"][0]
            summary[f"{key}_gain_db_equal_steps"] = round(gain, 3)
            summary[f"{key}_gain_db_equal_time"] = round(stats[method][2] - stats["pvd"][2], 3)
            summary[f"{key}_beats_pvd"] = bool(n_seeds > 1 and gain > max(stats[method][1], stats["pvd"][1]))
    return {"rows": rows, "summary": summary}
