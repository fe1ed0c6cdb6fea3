"""`v3kd bench event-vggt`: the EventVGGT ablation on held-out street trajectories, over several seeds.

Rows: the teacher on RGB (reference), the event student trained on ground-truth depth, and students distilled
from the teacher with output-only, +STFD, +STFD+CMFM and the full objective (+TCD), all with the same steps;
each student row is trained once per seed (0, 1, ...) and given as mean ± std over the seeds. Errors are in
metres after one median scale per sequence (see `distill.event_vggt.evaluate`); `err30_raw` is the same
error without the scale (metric depth) and `err30_ramnet` the same predictions scored as RAM-Net's code scores
them (raw metres, prediction clipped to 80 m, per frame); jitter is the temporal depth-change error.

Splits (the streets a student is scored on; every student trains on the same streets, seeds 0..):
`validation` (streets 6000..) is where defaults are chosen, `test` (streets 5000..) is run once they are.
Neither overlaps the training streets nor the bundled teacher's own (10000.., check streets 20000..).
Data and runs live under --runs-dir (default bench/runs/event-vggt) and are reused across splits: a
finished run (same settings) is evaluated again, an interrupted one resumes, one made with other settings
is refused. A variant (`--set stfd_mode=tokens`: DistillConfig options other than the rows' own switches,
steps, seed and network) trains its rows into folders suffixed with it (`full+stfd_mode=tokens-seed1`),
beside the defaults' runs and on the same data; `--rows` picks rows (a validation comparison of one choice
needs only the rows it changes).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..distill.event_vggt.clips import EventClips
from ..distill.event_vggt.evaluate import evaluate_depth_aligns
from ..distill.event_vggt.model import NetConfig
from ..distill.event_vggt.simulate import SimConfig, simulate_dataset
from ..distill.event_vggt.teacher import load_geometry_teacher, load_net
from ..distill.event_vggt.train import DistillConfig, changed_options, train_network
from ..errors import RunError
from .report import mean_std

__all__ = ["run", "ROWS", "SPLITS", "VARIANT_KEYS", "val_test_disjoint", "variant_suffix"]

# (row name, run folder, DistillConfig switches)
ROWS = [
    ("student, ground-truth depth (upper bound)", "gt", {"supervision": "gt"}),
    ("output-only distillation", "output_only", {"stfd": False, "cmfm": False, "tcd": False}),
    ("+STFD", "stfd", {"stfd": True, "cmfm": False, "tcd": False}),
    ("+STFD+CMFM (no TCD)", "stfd_cmfm", {"stfd": True, "cmfm": True, "tcd": False}),
    ("full: +STFD+CMFM+TCD", "full", {"stfd": True, "cmfm": True, "tcd": True}),
]
TRAIN_SEED = 0
SPLITS = {"validation": 6000, "test": 5000}  # first street seed of each evaluation split
TEACHER_STREETS = (10000, 20000)  # the bundled teacher's training and check streets start here
# options a variant may change (the rest are the rows' switches, the bench's steps and seeds, the network)
VARIANT_KEYS = ("si_lambda", "w_stfd", "w_cmfm", "w_tcd", "stfd_taps", "cmfm_tap", "mix_ratio", "init", "stfd_mode",
                "batch", "lr")
_KEYS = ("err10", "err20", "err30", "abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "jitter", "scale")


def val_test_disjoint(n_train: int = 12, n_eval: int = 4) -> bool:
    """Whether the training, validation and test streets (and the teacher's) are pairwise disjoint seeds."""
    ranges = [range(TRAIN_SEED, TRAIN_SEED + n_train), *(range(s, s + n_eval) for s in SPLITS.values()),
              *(range(s, s + 16) for s in TEACHER_STREETS)]
    seeds = [s for r in ranges for s in r]
    return len(seeds) == len(set(seeds))


def variant_suffix(variant: dict[str, Any]) -> str:
    """Folder and report suffix of a variant: "" for the defaults, "+key=value,key=value" (sorted keys) else."""
    return "+" + ",".join(f"{k}={variant[k]}" for k in sorted(variant)) if variant else ""


def _check_variant(variant: dict[str, Any], rows: list[str]) -> None:
    bad = sorted(set(variant) - set(VARIANT_KEYS))
    if bad:
        raise RunError(f"--set {bad[0]}: not a variant option (one of {', '.join(VARIANT_KEYS)})")
    known = [folder for _, folder, _ in ROWS]
    unknown = [r for r in rows if r not in known]
    if unknown or not rows:
        raise RunError(f"--rows: unknown row {unknown[0] if unknown else '(none)'!r} (rows: {', '.join(known)})")


def _train_or_reuse(data: Path, run_dir: Path, cfg: DistillConfig, teacher, info: dict, progress) -> dict:
    metrics_file = run_dir / "metrics.json"
    config_file = run_dir / "config.json"
    if config_file.is_file():
        changed = changed_options(json.loads(config_file.read_text()).get("distill") or {}, dataclasses.asdict(cfg))
        if changed:
            raise RunError(f"{run_dir}: made with other settings ({', '.join(changed[:4])}); use another "
                           "--runs-dir or delete the old runs")
    if metrics_file.is_file():
        m = json.loads(metrics_file.read_text())
        if m.get("steps") == cfg.steps:
            return m
    resume = (run_dir / "train_state.safetensors").is_file()
    progress(f"{'resuming' if resume else 'training'} {cfg.name()} in {run_dir}")
    return train_network(data, run_dir, cfg, teacher, info, resume=resume)


def run(quick: bool = False, teacher_path: Path | None = None, runs_dir: Path | None = None,
        steps: int | None = None, sim: SimConfig | None = None, net: NetConfig | None = None,
        progress=print, split: str = "validation", seeds: int | None = None, variant: dict[str, Any] | None = None,
        rows: list[str] | None = None) -> dict[str, Any]:
    """Simulate (or reuse) the data, train every row's student for each seed, evaluate on the split's
    sequences. sim / net: data and student settings (default: SimConfig() and NetConfig(); tests pass tiny ones);
    variant: DistillConfig options over the defaults for every row; rows: run folders of the rows to run."""
    if split not in SPLITS:
        raise RunError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    variant, picked = dict(variant or {}), list(rows or [folder for _, folder, _ in ROWS])
    _check_variant(variant, picked)
    suffix = variant_suffix(variant)
    runs_dir = Path(runs_dir or "bench/runs/event-vggt")
    n_train, n_eval = (3, 1) if quick else (12, 4)
    n_seeds = seeds or (1 if quick else 3)
    sim = sim or SimConfig(seconds=1.0 if quick else 2.0)
    steps = steps or (60 if quick else 1500)
    train_dir, eval_dir = runs_dir / "data_train", runs_dir / f"data_{split}"
    simulate_dataset(train_dir, n_train, TRAIN_SEED, sim, progress)
    simulate_dataset(eval_dir, n_eval, SPLITS[split], sim, progress)
    teacher, info = load_geometry_teacher(teacher_path)
    clips = EventClips(eval_dir, 4, 5)
    scores = evaluate_depth_aligns(lambda x: teacher(x)["depth"], clips, "rgb", 4)  # median, none, ramnet
    ref, ref_raw, ref_ramnet = (scores[a] for a in ("median", "none", "ramnet"))
    table: list[dict[str, Any]] = [{"method": "teacher on RGB (reference)", "seeds": 0,
                                   **{k: round(ref[k], 4) for k in _KEYS}, "err30_raw": round(ref_raw["err30"], 4),
                                   "err30_ramnet": round(ref_ramnet["err30"], 4), "train_minutes": None}]
    per_row: dict[str, list[dict[str, float]]] = {}
    by: dict[str, dict[str, Any]] = {}
    for name, folder, switches in (r for r in ROWS if r[1] in picked):
        for seed in range(n_seeds):
            try:
                cfg = DistillConfig(steps=steps, seed=seed, net=copy.deepcopy(net or NetConfig()), **switches,
                                    **variant)
            except TypeError as exc:  # a value of the wrong kind
                raise RunError(f"--set: {exc}") from None
            run_dir = runs_dir / (folder + suffix + ("" if seed == 0 else f"-seed{seed}"))
            m = _train_or_reuse(train_dir, run_dir, cfg, teacher, info, progress)
            model, _ = load_net(run_dir)
            scores = evaluate_depth_aligns(lambda x, m=model: m(x)["depth"], clips, "events", cfg.clip_len, cfg.bins)
            res, raw, ramnet = (scores[a] for a in ("median", "none", "ramnet"))
            per_row.setdefault(folder, []).append({**res, "err30_raw": raw["err30"], "err30_ramnet": ramnet["err30"],
                                                   "minutes": m["minutes"]})
            progress(f"{name} seed {seed}: err30 {res['err30']:.3f} m (raw {raw['err30']:.3f}), "
                     f"jitter {res['jitter']:.3f}")
        runs = per_row[folder]
        row: dict[str, Any] = {"method": name + (f" ({suffix[1:]})" if suffix else ""), "seeds": len(runs)}
        for k in (*_KEYS, "err30_raw", "err30_ramnet"):
            mean, std = mean_std([r[k] for r in runs])
            row[k], row[f"{k}_std"] = round(mean, 4), round(std, 4)
        row["train_minutes"] = round(float(np.mean([r["minutes"] for r in runs])), 2)
        table.append(row)
        by[folder] = row
    summary: dict[str, Any] = {"err30_teacher": round(ref["err30"], 4)}
    if "full" in by:
        full = by["full"]
        summary.update(err30_full_mean=full["err30"], err30_full_std=full["err30_std"],
                       err30_raw_full_mean=full["err30_raw"], err30_ramnet_full_mean=full["err30_ramnet"],
                       jitter_full=full["jitter"])
    if "output_only" in by:
        out = by["output_only"]
        summary.update(err30_output_only_mean=out["err30"], err30_output_only_std=out["err30_std"],
                       err30_raw_output_only_mean=out["err30_raw"],
                       err30_ramnet_output_only_mean=out["err30_ramnet"])
    if "full" in by and "output_only" in by:
        # "better" only when the gap exceeds both standard deviations (issue 25)
        gap = by["output_only"]["err30"] - by["full"]["err30"]
        summary["full_beats_output_only"] = bool(gap > max(by["full"]["err30_std"], by["output_only"]["err30_std"])
                                                 and n_seeds > 1)
    if "gt" in by:
        summary["err30_gt_supervised"] = by["gt"]["err30"]
    if "stfd_cmfm" in by:
        summary["jitter_no_tcd"] = by["stfd_cmfm"]["jitter"]
    summary.update(split=split, seeds=n_seeds, val_test_disjoint=val_test_disjoint(n_train, n_eval), steps=steps,
                   train_sequences=n_train, eval_sequences=n_eval, variant=suffix[1:] or "defaults",
                   teacher=info.get("fingerprint") or info.get("path"))
    return {"rows": table, "summary": summary}
