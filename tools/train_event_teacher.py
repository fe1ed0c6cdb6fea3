"""Train the bundled EventVGGT teacher (vision3d_kd/assets/event_teacher): a small VGGT-shaped network that predicts
metric depth from clips of RGB frames, trained on simulated streets with ground-truth depth.

    python tools/train_event_teacher.py --work /tmp/event_teacher --out vision3d_kd/assets/event_teacher

Resumable: the data folder keeps finished sequences and the run resumes from its checkpoint. Teacher
data use street seeds 10000.. and the check at the end seeds 20000.., so neither overlaps the
benchmark's student data (0..) or its held-out streets (5000..).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from vision3d_kd.checkpoint import write_json
from vision3d_kd.distill.event_vggt.evaluate import evaluate_depth
from vision3d_kd.distill.event_vggt.model import NetConfig
from vision3d_kd.distill.event_vggt.simulate import SimConfig, simulate_dataset
from vision3d_kd.distill.event_vggt.teacher import load_geometry_teacher
from vision3d_kd.distill.event_vggt.train import DistillConfig, train_network


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="Folder for the data and the training run.")
    ap.add_argument("--out", type=Path, default=Path("vision3d_kd/assets/event_teacher"),
                    help="Where the teacher is copied.")
    ap.add_argument("--sequences", type=int, default=16, help="Training trajectories (2 s each).")
    ap.add_argument("--steps", type=int, default=3000, help="Optimiser steps (batch 4 clips of 4 frames).")
    ap.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate.")
    args = ap.parse_args()
    sim = SimConfig()
    simulate_dataset(args.work / "data", args.sequences, 10000, sim, print)
    simulate_dataset(args.work / "check", 4, 20000, sim, print)
    run = args.work / "teacher"
    cfg = DistillConfig(input="rgb", supervision="gt", steps=args.steps, lr=args.lr, si_lambda=0.5, net=NetConfig())
    train_network(args.work / "data", run, cfg, resume=(run / "train_state.safetensors").is_file())
    teacher, _ = load_geometry_teacher(run)
    metrics = evaluate_depth(lambda x: teacher(x)["depth"], args.work / "check", "rgb", cfg.clip_len, align="none")
    print("held-out (metric, no alignment): " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "weights.safetensors"):
        shutil.copyfile(run / name, args.out / name)
    write_json(args.out / "metrics.json", {f"{k}_heldout": v for k, v in metrics.items()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
