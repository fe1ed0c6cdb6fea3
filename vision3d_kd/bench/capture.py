"""`v3kd bench capture`: real-capture support scored on ground truth.

A procedural object in a textured room, seen through OPENCV lenses at two image sizes (`v3kd data scene
NAME --capture`), is fitted three ways per seed, each in its own process under the same wall-clock budget:
- capture: hash grid with undistortion and scene contraction (what `v3kd fit` does by default);
- naive: the same data with the distortion ignored and no contraction (`--no-undistort --scene bounded`);
- splats: Gaussian splats started from the capture's sparse points;
- sfm: structure from motion (`v3kd data process`) on the rendered images alone, then the capture fit on
  its poses with `--refine-poses`; its poses are compared with the true ones after a similarity alignment;
- sfm-intrinsics: the same with `--refine-intrinsics` too (SfM's focal lengths are ~1 % long here).
Scores are held-out PSNR (every 8th frame, undistorted truth). Held-out poses from SfM are estimates too, so
field runs are also scored after aligning each held-out camera to its image with the field frozen
(`psnr_test_aligned`, `v3kd eval --align-poses`); for the record, seed 0 is also fitted on the SfM poses
without refinement (`sfm-fixed`).

Splits: `validation` (torus, room seed 1) is what defaults are tuned on; `test` (composite, room seed 2)
is run once they are chosen. Runs live under --runs-dir (default bench/runs/capture/SPLIT); finished runs
are reused, interrupted ones resumed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, RunError
from .report import mean_std, repo_path

__all__ = ["run", "SPLITS", "METHODS"]

SPLITS = {"validation": ("torus", 1), "test": ("composite", 2)}
METHODS = {
    "capture": ["--field", "hashgrid"],
    "naive": ["--field", "hashgrid", "--no-undistort", "--scene", "bounded"],
    "splats": ["--field", "splats"],
    "sfm": ["--field", "hashgrid", "--refine-poses"],
    "sfm-intrinsics": ["--field", "hashgrid", "--refine-poses", "--refine-intrinsics"],
}
SFM_METHODS = ("sfm", "sfm-intrinsics")  # fitted on the poses (and intrinsics) that SfM recovered
ALIGN_STEPS = 100  # test-time alignment steps per held-out camera


def _cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "vision3d_kd.cli.main", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"{' '.join(args[:2])}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")


def _fit(data: Path, out: Path, args: list[str], budget: float, seed: int, align: bool = False) -> dict[str, Any]:
    """Fit (or reuse / resume) one run; its metrics. `align`: also score it with aligned held-out cameras,
    ALIGN_STEPS steps each (again when an earlier score used another number; only when its weights are
    here: runs of an earlier checkout keep only their metrics)."""
    if not (out / "metrics.json").is_file():
        resume = ["--resume"] if (out / "config.json").is_file() else []
        _cli("fit", str(data), *args, "--out", str(out), "--max-seconds", str(budget), "--steps", "1000000",
             "--seed", str(seed), "--no-progress", "--device", "cpu", *resume)
    metrics = json.loads((out / "metrics.json").read_text())
    stale = metrics.get("align_steps", 100) != ALIGN_STEPS  # (runs before align_steps was recorded: 100)
    if align and ("psnr_test_aligned" not in metrics or stale) and (out / "weights.safetensors").is_file():
        _cli("eval", str(out), "--data", str(data), "--split", "test", "--align-poses", str(ALIGN_STEPS),
             "--device", "cpu")
        metrics = json.loads((out / "metrics.json").read_text())
    return metrics


def _sfm_poses(data: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    """SfM on the rendered images (reused when done): its folder and its pose errors vs the true COLMAP model."""
    from ..data.colmap import colmap_frames, find_colmap_model, read_colmap_model
    from ..metrics import pose_errors

    sfm_data = base / "sfm-data"
    if not (sfm_data / "transforms.json").is_file():
        _cli("data", "process", str(data / "images"), "--out", str(sfm_data), "--no-progress")
    true_dir, est_dir = find_colmap_model(data), find_colmap_model(sfm_data)
    true = {f.image.name: f.c2w for f in colmap_frames(read_colmap_model(true_dir), data / "images", true_dir)}
    est = {f.image.name: f.c2w for f in colmap_frames(read_colmap_model(est_dir), sfm_data / "images", est_dir)}
    names = sorted(set(true) & set(est))
    est_c2w, true_c2w = np.stack([est[n] for n in names]), np.stack([true[n] for n in names])
    errs = pose_errors(est_c2w, true_c2w)
    # beside the error as a fraction of the cameras' spread (pose_errors), the same in units of the whole
    # scene's size (the room's diagonal): what "1 % of the scene scale" reads as when the scene is the room
    spread = float(np.linalg.norm(true_c2w[:, :3, 3] - true_c2w[:, :3, 3].mean(0), axis=1).max())
    room = json.loads((data / "scene.json").read_text())["room"]
    diagonal = 2.0 * float(np.linalg.norm(room["half_size"]))
    return sfm_data, {"registered": len(est), "images": len(true), **{k: float(v) for k, v in errs.items()},
                      "trans_err_scene": float(errs["trans_err"]) * spread / diagonal}


def _refined_pose_errors(data: Path, sfm_data: Path, out: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` with the refined training poses' errors against the true ones (similarity-aligned, as
    `sfm_rot_err_deg`): refined_rot_err_deg (mean, degrees) and refined_trans_err_pct (% of the cameras'
    spread), computed once from the run's last checkpoint and merged into its metrics.json."""
    from ..data import load_dataset
    from ..metrics import pose_errors
    from ..render.pose_adjust import adjust_cameras
    from ..runs import update_metrics

    state = out / "train_state.safetensors"
    if "refined_rot_err_deg" in metrics or not state.is_file():
        return metrics
    from safetensors.torch import load_file

    true, est = load_dataset(data, "train"), load_dataset(sfm_data, "train")
    index = {n: i for i, n in enumerate(true.names)}
    true_c2w = true.cameras.c2w[[index[n] for n in est.names]].double().numpy()
    refined = adjust_cameras(est.cameras, load_file(str(state))["extra.pose_delta"])
    errs = pose_errors(refined.c2w.double().numpy(), true_c2w)
    extra = {"refined_rot_err_deg": float(errs["rot_err_deg"]), "refined_trans_err_pct": 100 * float(errs["trans_err"])}
    update_metrics(out, extra)
    return {**metrics, **extra}


def _row(method: str, seed: int, m: dict[str, Any], out: Path) -> dict[str, Any]:
    row = {"method": method, "seed": seed, "psnr_test": round(m["psnr_test"], 3), "ssim_test": round(m["ssim_test"], 4)}
    for key in ("psnr_test_aligned", "refined_rot_err_deg", "refined_trans_err_pct"):
        if key in m:
            row[key] = round(m[key], 3)
    if "psnr_test_aligned" in m:
        row["align_steps"] = m.get("align_steps", 100)
    return {**row, "seconds": round(m["seconds"], 1), "steps": m["steps"], "run": repo_path(out)}


def run(quick: bool = False, split: str = "validation", budget_s: float | None = None, seeds: int | None = None,
        runs_dir: Path | None = None, methods: list[str] | None = None, sfm: bool = True,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every method x seed on the `split` scene (default budget 900 s per fit, 3 seeds; quick: 60 s, 1 seed,
    images at half size; `sfm` False drops the SfM method); returns {rows, summary}."""
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    name, room_seed = SPLITS[split]
    budget = budget_s or (60.0 if quick else 900.0)
    n_seeds = seeds or (1 if quick else 3)
    base = Path(runs_dir) if runs_dir else Path("bench/runs/capture") / (f"{split}-quick" if quick else split)
    data = base / "data"
    if not (data / "transforms.json").is_file():
        scale = ["--scale", "0.5", "--n-views", "40"] if quick else []
        _cli("data", "scene", name, "--capture", "--seed", str(room_seed), "--out", str(data), *scale)
    say = progress or (lambda line: None)
    chosen = [m for m in (methods or list(METHODS)) if sfm or m not in SFM_METHODS]
    sfm_data, errs = _sfm_poses(data, base) if set(chosen) & set(SFM_METHODS) else (None, None)
    if errs is not None:
        say(f"SfM: {errs['rot_err_deg']:.3f} deg, {100 * errs['trans_err']:.2f} % of the cameras' spread")
    rows: list[dict[str, Any]] = []
    scores: dict[str, dict[str, list[float]]] = {}
    for seed in range(n_seeds):  # seed-major, so a partial run (a stopped session) has every method once
        for method in chosen:
            out = base / f"{method}-s{seed}"
            m = _fit(sfm_data if method in SFM_METHODS else data, out, METHODS[method], budget, seed,
                     align=method in ("capture", *SFM_METHODS))
            if method in SFM_METHODS:
                m = _refined_pose_errors(data, sfm_data, out, m)
            rows.append(_row(method, seed, m, out))
            for key in ("psnr_test", "psnr_test_aligned", "refined_rot_err_deg", "refined_trans_err_pct"):
                if key in m:
                    scores.setdefault(method, {}).setdefault(key, []).append(m[key])
            say(f"{method} seed {seed}: {m['psnr_test']:.2f} dB"
                + (f" ({m['psnr_test_aligned']:.2f} dB aligned)" if "psnr_test_aligned" in m else ""))
    summary: dict[str, Any] = {"scene": name, "split": split, "budget_s": budget, "seeds": n_seeds}
    keys = {"capture": "psnr_capture", "naive": "psnr_naive", "splats": "psnr_capture_splats", "sfm": "psnr_sfm_poses",
            "sfm-intrinsics": "psnr_sfm_intrinsics"}
    for method, by_key in scores.items():
        summary[keys[method]], summary[keys[method] + "_std"] = mean_std(by_key["psnr_test"], 3)
        if "psnr_test_aligned" in by_key:
            aligned = by_key["psnr_test_aligned"]
            summary[keys[method] + "_aligned"], summary[keys[method] + "_aligned_std"] = mean_std(aligned, 3)
            summary[keys[method] + "_aligned_seeds"] = len(aligned)
        for key in ("refined_rot_err_deg", "refined_trans_err_pct"):  # runs whose checkpoint is on this machine
            if key in by_key:
                summary[f"{keys[method].removeprefix('psnr_')}_{key}"] = round(statistics.fmean(by_key[key]), 4)
    if errs is not None:
        summary.update(_sfm_summary(errs, summary))
        fixed = _fit(sfm_data, base / "sfm-fixed-s0", METHODS["capture"], budget, 0)
        rows.append(_row("sfm without pose refinement (record)", 0, fixed, base / "sfm-fixed-s0"))
        summary["psnr_sfm_fixed"] = round(fixed["psnr_test"], 3)
    return {"rows": rows, "summary": summary}


def _sfm_summary(errs: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The SfM figures: pose errors, and the fits on its poses minus the fits on the true ones (as named:
    both as given; and with every held-out camera aligned, the SfM run against the true-pose run)."""
    out = {"sfm_rot_err_deg": round(errs["rot_err_deg"], 4), "sfm_rot_err_deg_max": round(errs["rot_err_deg_max"], 4),
           "sfm_trans_err_pct": round(100 * errs["trans_err"], 4),
           "sfm_trans_err_pct_of_scene": round(100 * errs["trans_err_scene"], 4),
           "sfm_registered": f"{errs['registered']}/{errs['images']}"}
    for key, tag in (("psnr_sfm_poses", "psnr_sfm"), ("psnr_sfm_intrinsics", "psnr_sfm_intrinsics")):
        if key not in summary or "psnr_capture" not in summary:
            continue
        out[f"{tag}_minus_true"] = round(summary[key] - summary["psnr_capture"], 3)
        if f"{key}_aligned" in summary:
            out[f"{tag}_aligned_minus_true"] = round(summary[f"{key}_aligned"] - summary["psnr_capture"], 3)
            if "psnr_capture_aligned" in summary:
                out[f"{tag}_aligned_minus_true_aligned"] = round(
                    summary[f"{key}_aligned"] - summary["psnr_capture_aligned"], 3)
    return out
