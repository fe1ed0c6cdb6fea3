"""`v3kd bench event-vggt`: the EventVGGT ablation on held-out street trajectories.

Rows: the teacher on RGB (reference), the event student trained on ground-truth depth (upper bound),
and students distilled from the teacher with output-only, +STFD, +STFD+CMFM and the full objective
(+TCD), all with the same steps and seed. Errors are in metres after one median scale per sequence
(see `distill.event_vggt.evaluate`); jitter is the temporal depth-change error. Data (train seeds 0..,
test seeds 5000..) and runs live under --runs-dir (default bench/runs/event-vggt) and are reused: a
finished run is evaluated again, an interrupted one resumes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..distill.event_vggt.clips import EventClips
from ..distill.event_vggt.evaluate import evaluate_depth
from ..distill.event_vggt.model import NetConfig
from ..distill.event_vggt.simulate import SimConfig, simulate_dataset
from ..distill.event_vggt.teacher import load_geometry_teacher, load_net
from ..distill.event_vggt.train import DistillConfig, train_network

__all__ = ["run", "ROWS"]

# (row name, run folder, DistillConfig switches)
ROWS = [
    ("student, ground-truth depth (upper bound)", "gt", {"supervision": "gt"}),
    ("output-only distillation", "output_only", {"stfd": False, "cmfm": False, "tcd": False}),
    ("+STFD", "stfd", {"stfd": True, "cmfm": False, "tcd": False}),
    ("+STFD+CMFM (no TCD)", "stfd_cmfm", {"stfd": True, "cmfm": True, "tcd": False}),
    ("full: +STFD+CMFM+TCD", "full", {"stfd": True, "cmfm": True, "tcd": True}),
]
TEST_SEED = 5000
_KEYS = ("err10", "err20", "err30", "abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "jitter", "scale")


def _train_or_reuse(data: Path, run_dir: Path, cfg: DistillConfig, teacher, info: dict, progress) -> dict:
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():
        m = json.loads(metrics_file.read_text())
        if m.get("steps") == cfg.steps:
            return m
    resume = (run_dir / "train_state.safetensors").is_file()
    progress(f"{'resuming' if resume else 'training'} {cfg.name()} in {run_dir}")
    return train_network(data, run_dir, cfg, teacher, info, resume=resume)


def run(quick: bool = False, teacher_path: Path | None = None, runs_dir: Path | None = None,
        steps: int | None = None, sim: SimConfig | None = None, net: NetConfig | None = None,
        progress=print) -> dict[str, Any]:
    """Simulate (or reuse) the data, train every row's student, evaluate on the held-out sequences.
    sim / net: data and student settings (default: SimConfig() and NetConfig(); tests pass tiny ones)."""
    runs_dir = Path(runs_dir or "bench/runs/event-vggt")
    n_train, n_test = (3, 1) if quick else (12, 4)
    sim = sim or SimConfig(seconds=1.0 if quick else 2.0)
    steps = steps or (60 if quick else 1500)
    train_dir, test_dir = runs_dir / "data_train", runs_dir / "data_test"
    simulate_dataset(train_dir, n_train, 0, sim, progress)
    simulate_dataset(test_dir, n_test, TEST_SEED, sim, progress)
    teacher, info = load_geometry_teacher(teacher_path)
    test = EventClips(test_dir, 4, 5)
    rows: list[dict[str, Any]] = []
    ref = evaluate_depth(lambda x: teacher(x)["depth"], test, "rgb", 4)
    rows.append({"method": "teacher on RGB (reference)", **{k: ref[k] for k in _KEYS}, "train_minutes": None})
    for name, folder, switches in ROWS:
        cfg = DistillConfig(steps=steps, seed=0, net=copy.deepcopy(net or NetConfig()), **switches)
        m = _train_or_reuse(train_dir, runs_dir / folder, cfg, teacher, info, progress)
        model, _ = load_net(runs_dir / folder)
        res = evaluate_depth(lambda x, m=model: m(x)["depth"], test, "events", cfg.clip_len, cfg.bins)
        rows.append({"method": name, **{k: res[k] for k in _KEYS}, "train_minutes": m["minutes"]})
        progress(f"{name}: err30 {res['err30']:.3f} m, abs_rel {res['abs_rel']:.3f}, jitter {res['jitter']:.3f}")
    by = {folder: rows[i + 1] for i, (_, folder, _) in enumerate(ROWS)}
    summary = {"err30_full": by["full"]["err30"], "err30_output_only": by["output_only"]["err30"],
               "err30_gt_supervised": by["gt"]["err30"], "err30_teacher": ref["err30"],
               "jitter_full": by["full"]["jitter"], "jitter_no_tcd": by["stfd_cmfm"]["jitter"],
               "full_over_output_only_err30": by["full"]["err30"] / by["output_only"]["err30"],
               "steps": steps, "train_sequences": n_train, "test_sequences": n_test,
               "teacher": info.get("fingerprint") or info.get("path")}
    return {"rows": rows, "summary": summary}
