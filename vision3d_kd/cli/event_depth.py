"""`v3kd event-depth {simulate,train-teacher,distill,eval,predict}`: EventVGGT on simulated street data."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["event_app"]

event_app = typer.Typer(help="EventVGGT: distil a geometry teacher on RGB frames into an event-camera depth student.",
                        no_args_is_help=True)

_STEPS = typer.Option(1500, "--steps", help="Optimiser steps.")
_BATCH = typer.Option(4, "--batch", help="Clips per step.")
_LR = typer.Option(5e-4, "--lr", help="AdamW learning rate (cosine decay after a short warm-up).")
_CLIP = typer.Option(4, "--clip-len", help="Frames per clip (attention spans the clip).")
_SEED = typer.Option(0, "--seed", help="Random seed (clip order, token mixing, initialisation).")
_RESUME = typer.Option(False, "--resume", help="Continue RUN from its last checkpoint (same options; --steps may "
                       "grow).")


def _report(out: Path, cfg, metrics: dict) -> None:
    print(f"{cfg.name()}: {metrics['steps']} steps in {metrics['minutes']:.1f} min, final loss "
          f"{metrics['final_loss']:.4f}; wrote {out}")


@event_app.command("simulate")
def simulate_command(
    out: Path = typer.Option(..., "--out", "-o", help="Data folder to write (seq_NNNN/ + meta.json); resumes."),
    sequences: int = typer.Option(8, "--sequences", help="Number of trajectories (each its own street)."),
    seconds: float = typer.Option(2.0, "--seconds", help="Length of each trajectory in seconds."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first sequence (sequence k uses seed + k)."),
    height: int = typer.Option(96, "--height", help="Sensor rows."),
    width: int = typer.Option(128, "--width", help="Sensor columns."),
    fov: float = typer.Option(80.0, "--fov", help="Horizontal field of view in degrees."),
    fps: int = typer.Option(100, "--fps", help="Render rate fed to the event simulator (frames/s)."),
    frame_rate: int = typer.Option(20, "--frame-rate", help="Rate of the stored RGB/depth frames and event windows."),
    contrast: float = typer.Option(0.2, "--contrast", help="Contrast threshold C on log intensity."),
    mismatch: float = typer.Option(0.03, "--mismatch", help="Per-pixel standard deviation of C."),
    refractory: float = typer.Option(1e-3, "--refractory", help="Refractory period per pixel in seconds."),
    noise_rate: float = typer.Option(0.0, "--noise-rate", help="Noise events per pixel per second."),
    supersample: int = typer.Option(2, "--supersample", help="Rays per pixel side (anti-aliasing)."),
) -> None:
    """Render camera trajectories through procedural streets (RGB, metric depth, poses) and simulate events."""
    from rich.progress import Progress

    from ..distill.event_vggt.events import EventSimConfig
    from ..distill.event_vggt.simulate import SimConfig, simulate_dataset

    cfg = SimConfig(height, width, fov, seconds, fps, frame_rate, events=EventSimConfig(
        contrast, mismatch, refractory, noise_rate), supersample=supersample)
    with Progress() as bar:
        task = bar.add_task("simulate", total=sequences)

        def report(line: str) -> None:
            bar.console.print(line)
            bar.advance(task)

        done = simulate_dataset(out, sequences, seed, cfg, report)
    print(f"wrote {len(done)} sequences to {out}")


@event_app.command("train-teacher")
def train_teacher_command(
    data: Path = typer.Argument(..., help="Data folder from `event-depth simulate` (RGB + depth are used)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for the teacher."),
    steps: int = _STEPS, batch: int = _BATCH, lr: float = _LR, clip_len: int = _CLIP, seed: int = _SEED,
    dim: int = typer.Option(96, "--dim", help="Token width."),
    depth: int = typer.Option(4, "--depth", help="Frame/global attention pairs."),
    patch: int = typer.Option(16, "--patch", help="Pixels per token side (must divide the image size)."),
    resume: bool = _RESUME,
) -> None:
    """Train the small VGGT-shaped RGB teacher on ground-truth depth (how vision3d_kd/assets/event_teacher was made)."""
    from ..distill.event_vggt.model import NetConfig
    from ..distill.event_vggt.train import DistillConfig, train_network

    cfg = DistillConfig(input="rgb", supervision="gt", steps=steps, batch=batch, lr=lr, clip_len=clip_len, seed=seed,
                        si_lambda=0.5, net=NetConfig(dim=dim, depth=depth, patch=patch))
    _report(out, cfg, train_network(data, out, cfg, resume=resume))


@event_app.command("distill")
def distill_command(
    data: Path = typer.Argument(..., help="Data folder from `event-depth simulate` (events + RGB; no depth is used "
                                "unless --gt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder for the student."),
    teacher: Path = typer.Option(None, "--teacher", help="Teacher run, or a VGGT checkout (default: the bundled "
                                 "vision3d_kd/assets/event_teacher)."),
    teacher_weights: Path = typer.Option(None, "--teacher-weights", help="VGGT weights (model.pt/.safetensors)."),
    gt: bool = typer.Option(False, "--gt", help="Train on ground-truth depth instead (the upper bound; no teacher)."),
    no_stfd: bool = typer.Option(False, "--no-stfd", help="Switch off Spatio-Temporal Feature Distillation."),
    no_cmfm: bool = typer.Option(False, "--no-cmfm", help="Switch off the Cross-Modal Feature Mixture."),
    no_tcd: bool = typer.Option(False, "--no-tcd", help="Switch off Temporal Consistency Distillation."),
    steps: int = _STEPS, batch: int = _BATCH, lr: float = _LR, clip_len: int = _CLIP, seed: int = _SEED,
    bins: int = typer.Option(5, "--bins", help="Time bins of the event voxel grid."),
    init: str = typer.Option(None, "--init", help="teacher: start from the teacher's weights (same architecture, "
                             "bundled teacher); random: from scratch. Default: the DistillConfig default."),
    stfd_mode: str = typer.Option(None, "--stfd-mode", help="STFD target: tokens (projected student tokens match "
                                  "the teacher's) or relations (token-affinity matrices of the clip match)."),
    w_stfd: float = typer.Option(None, "--w-stfd", help="Weight of the STFD term."),
    w_cmfm: float = typer.Option(None, "--w-cmfm", help="Weight of the CMFM auxiliary depth term."),
    w_tcd: float = typer.Option(None, "--w-tcd", help="Weight of the TCD term."),
    resume: bool = _RESUME,
) -> None:
    """Train the event student: distilled from the teacher (output + STFD + CMFM + TCD by default). Under
    torchrun, data-parallel: the batch is shared out over the ranks and rank 0 writes the run."""
    from ..distill.event_vggt.train import DistillConfig, distill_events
    from ..parallel import dist_env, init_distributed, leave_distributed

    chosen = {k: v for k, v in dict(init=init, stfd_mode=stfd_mode, w_stfd=w_stfd, w_cmfm=w_cmfm, w_tcd=w_tcd).items()
              if v is not None}
    cfg = DistillConfig(supervision="gt" if gt else "teacher", stfd=not no_stfd, cmfm=not no_cmfm, tcd=not no_tcd,
                        steps=steps, batch=batch, lr=lr, clip_len=clip_len, seed=seed, bins=bins, **chosen)
    dist = dist_env()
    init_distributed(dist)
    metrics = distill_events(data, out, cfg, teacher, teacher_weights, resume, dist=dist, show_progress=dist.writer)
    leave_distributed()
    if dist.writer:
        _report(out, cfg, metrics)


@event_app.command("eval")
def eval_command(
    run: Path = typer.Argument(..., help="A student or teacher run."),
    data: Path = typer.Option(..., "--data", help="Held-out data folder (with ground-truth depth)."),
    align: str = typer.Option("median", "--align", help="median: one scale per sequence (scale-ambiguous "
                              "students); none: raw metric depth; ramnet: RAM-Net's evaluation (raw metres, "
                              "prediction clipped to 80 m, per frame)."),
) -> None:
    """Depth errors (Abs Rel, Sq Rel, RMSE, RMSE log, δ, mean error at 10/20/30 m) and temporal jitter."""
    from ..distill.event_vggt.evaluate import evaluate_depth_run

    metrics = evaluate_depth_run(run, data, align)
    print("  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    print(f"wrote {run / 'metrics.json'}")


@event_app.command("predict")
def predict_command(
    run: Path = typer.Argument(..., help="An event student run."),
    events: Path = typer.Option(..., "--events", help="Event file (.npz or .h5 with x, y, t, p [, width, height])."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz with depth [F,H,W] (metres) and times [F]."),
    window: float = typer.Option(0.05, "--window", help="Seconds of events per depth frame."),
    width: int = typer.Option(None, "--width", help="Sensor width when the file does not store it."),
    height: int = typer.Option(None, "--height", help="Sensor height when the file does not store it."),
) -> None:
    """Predict a depth map for every --window seconds of a recorded or simulated event stream."""
    from ..distill.event_vggt.predict import write_depth_prediction

    depth, _ = write_depth_prediction(run, events, out, window, width, height)
    print(f"wrote {out}: {len(depth)} depth maps {depth.shape[1]}x{depth.shape[2]}")
