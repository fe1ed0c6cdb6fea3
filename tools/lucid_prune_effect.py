"""What pruning floaters per box does to finished layout runs, on the same weights (paired, no new training):
per object, mask IoU and colour agreement of the field alone (no occupancy grid), with the run's saved grid,
and with the grid after `prune_run(..., boxes=...)` on a copy (the run itself is not touched). The runs must
have been finished before per-box pruning (their grid cleared outside the boxes only). bench/TUNING.md cites
the result.

    python tools/lucid_prune_effect.py RUN [RUN ...] [--keep 0.1] [--gap 0.08] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vision3d_kd.data.layout import read_layout
from vision3d_kd.generation.layout_truth import score_layout_run
from vision3d_kd.generation.outputs import prune_run
from vision3d_kd.runs import load_run, render_settings_from

COPIED = shutil.ignore_patterns("*.mp4", "*.glb", "train_state*")


def scores(run: Path, keep: float, gap: float) -> dict[str, list[dict[str, float]]]:
    """{"field" | "grid" | "pruned": per object {iou, colour_agreement, prompt}} of one layout run."""
    layout = read_layout(run / "layout.json")
    model, grid, cfg = load_run(run)
    settings = render_settings_from(cfg)
    out = {"field": score_layout_run(model, None, settings, layout), "grid": score_layout_run(model, grid, settings,
                                                                                               layout)}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run, copy, ignore=COPIED)
        prune_run(copy, keep, max_gap=gap, boxes=[list(o.box) for o in layout.objects])
        model, grid, _ = load_run(copy)
        out["pruned"] = score_layout_run(model, grid, settings, layout)
    return {k: [{"prompt": o["prompt"], "iou": o["iou"], "colour_agreement": o["colour_agreement"]} for o in v]
            for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--keep", type=float, default=0.1, help="floater keep ratio (generate.floater_keep_ratio)")
    ap.add_argument("--gap", type=float, default=0.08, help="near-part gap, object frame (generate.close_gaps)")
    ap.add_argument("--json", type=Path, default=None, help="write every score here")
    a = ap.parse_args()
    rows = {}
    for run in a.runs:
        rows[str(run)] = s = scores(run, a.keep, a.gap)
        for i, o in enumerate(s["field"]):
            cells = [f"{k} {v[i]['iou']:.3f} / {v[i]['colour_agreement']:.2f}" for k, v in s.items()]
            print(f"{run.name} | {o['prompt']} | " + " | ".join(cells), flush=True)
    for k in ("field", "grid", "pruned"):
        ious = [o["iou"] for s in rows.values() for o in s[k]]
        print(f"{k}: mean IoU {np.mean(ious):.3f}, min {np.min(ious):.3f} over {len(ious)} objects")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
