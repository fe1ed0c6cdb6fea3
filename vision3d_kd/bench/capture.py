"""`v3kd bench capture`: real-capture support scored on ground truth.

A procedural object in a textured room, seen through OPENCV lenses at two image sizes (`v3kd data scene
NAME --capture`), is fitted three ways per seed, each in its own process under the same wall-clock budget:
- capture: hash grid with undistortion and scene contraction (what `v3kd fit` does by default);
- naive: the same data with the distortion ignored and no contraction (`--no-undistort --scene bounded`);
- splats: Gaussian splats started from the capture's sparse points.
Then structure from motion (`v3kd data process`) runs on the rendered images alone: its poses are compared
with the true ones after a similarity alignment, and a hash grid fitted on them is compared with the one
fitted on the true poses (seed 0). Scores are held-out PSNR (every 8th frame, undistorted truth).

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

__all__ = ["run", "SPLITS", "METHODS"]

SPLITS = {"validation": ("torus", 1), "test": ("composite", 2)}
METHODS = {
    "capture": ["--field", "hashgrid"],
    "naive": ["--field", "hashgrid", "--no-undistort", "--scene", "bounded"],
    "splats": ["--field", "splats"],
}


def _cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "vision3d_kd.cli.main", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"{' '.join(args[:2])}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")


def _fit(data: Path, out: Path, args: list[str], budget: float, seed: int) -> dict[str, Any]:
    """Fit (or reuse / resume) one run; its metrics."""
    if not (out / "metrics.json").is_file():
        resume = ["--resume"] if (out / "config.json").is_file() else []
        _cli("fit", str(data), *args, "--out", str(out), "--max-seconds", str(budget), "--steps", "1000000",
             "--seed", str(seed), "--no-progress", "--device", "cpu", *resume)
    return json.loads((out / "metrics.json").read_text())


def _rel(path: Path) -> str:
    """A path relative to the repository (or the working directory) when inside it, else as given."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        try:
            return str(Path(path).resolve().relative_to(base))
        except ValueError:
            continue
    return str(path)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return (round(statistics.fmean(values), 3), round(statistics.stdev(values), 3) if len(values) > 1 else 0.0)


def _sfm(data: Path, base: Path, budget: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """SfM on the rendered images: pose errors vs the true COLMAP model, and a hash grid fitted on them."""
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
    sfm = {"registered": len(est), "images": len(true), **{k: float(v) for k, v in errs.items()},
           "trans_err_scene": float(errs["trans_err"]) * spread / diagonal}
    metrics = _fit(sfm_data, base / "sfm-capture-s0", METHODS["capture"], budget, 0)
    return sfm, metrics


def run(quick: bool = False, split: str = "validation", budget_s: float | None = None, seeds: int | None = None,
        runs_dir: Path | None = None, methods: list[str] | None = None, sfm: bool = True,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every method x seed on the `split` scene (default budget 900 s per fit, 3 seeds; quick: 60 s, 1 seed,
    images at half size), then SfM; returns {rows, summary}."""
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
    rows, psnrs, sfm_result = [], {}, None
    for seed in range(n_seeds):  # seed-major, so a partial run (a stopped session) has every method once
        for method in methods or list(METHODS):
            out = base / f"{method}-s{seed}"
            m = _fit(data, out, METHODS[method], budget, seed)
            rows.append({"method": method, "seed": seed, "psnr_test": round(m["psnr_test"], 3),
                         "ssim_test": round(m["ssim_test"], 4), "seconds": round(m["seconds"], 1),
                         "steps": m["steps"], "run": _rel(out)})
            psnrs.setdefault(method, []).append(m["psnr_test"])
            say(f"{method} seed {seed}: {m['psnr_test']:.2f} dB")
        if sfm and seed == 0:
            sfm_result = _sfm(data, base, budget)
            say(f"SfM: {sfm_result[0]['rot_err_deg']:.3f} deg, {100 * sfm_result[0]['trans_err']:.2f} %; "
                f"fit on its poses {sfm_result[1]['psnr_test']:.2f} dB")
    summary: dict[str, Any] = {"scene": name, "split": split, "budget_s": budget, "seeds": n_seeds}
    keys = {"capture": "psnr_capture", "naive": "psnr_naive", "splats": "psnr_capture_splats"}
    for method, values in psnrs.items():
        summary[keys[method]], summary[keys[method] + "_std"] = _mean_std(values)
    if sfm_result is not None:
        errs, m = sfm_result
        summary["sfm_rot_err_deg"] = round(errs["rot_err_deg"], 4)
        summary["sfm_rot_err_deg_max"] = round(errs["rot_err_deg_max"], 4)
        summary["sfm_trans_err_pct"] = round(100 * errs["trans_err"], 4)
        summary["sfm_trans_err_pct_of_scene"] = round(100 * errs["trans_err_scene"], 4)
        summary["sfm_registered"] = f"{errs['registered']}/{errs['images']}"
        summary["psnr_sfm_poses"] = round(m["psnr_test"], 3)
        if "capture" in psnrs:
            summary["psnr_sfm_minus_true"] = round(m["psnr_test"] - psnrs["capture"][0], 3)
        rows.append({"method": "capture on SfM poses", "seed": 0, "psnr_test": round(m["psnr_test"], 3),
                     "ssim_test": round(m["ssim_test"], 4), "seconds": round(m["seconds"], 1), "steps": m["steps"],
                     "run": _rel(base / "sfm-capture-s0"), "rot_err_deg": round(errs["rot_err_deg"], 4),
                     "trans_err_pct": round(100 * errs["trans_err"], 4)})
    return {"rows": rows, "summary": summary}
