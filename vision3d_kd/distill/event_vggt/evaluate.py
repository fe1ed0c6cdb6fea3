"""Depth evaluation of event students and RGB teachers on held-out sequences.

A sequence's frames are predicted in consecutive clips of the network's clip length (the last clip
overlaps the one before when the length does not divide). Students distilled with a scale-invariant
loss know depth only up to scale, so by default every method's prediction is multiplied by one median
scale per sequence (median of gt/pred over valid pixels, `--align median`); `--align none` reports raw
metric depth. Metrics are computed per sequence on pixels with ground truth (not sky, <= 80 m) and
averaged over sequences. `--align ramnet` follows RAM-Net's `evaluation.py` instead: raw metres, the
prediction clipped to [0, 80 m], pixels whose prediction exceeds the frame's farthest ground truth dropped,
metrics per frame and averaged over frames (then over sequences). `evaluate_depth_run` scores a run
directory (what `v3kd event-depth eval` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import ConfigError
from ...metrics import depth_metrics, median_scale, temporal_jitter, valid_depth
from ...runs import update_metrics
from .clips import EventClips, Sequence
from .teacher import NetTeacher, load_net

__all__ = ["predict_sequence", "evaluate_depth", "evaluate_depth_aligns", "evaluate_depth_run", "Predictor",
           "ALIGNS"]

Predictor = Callable[[Tensor], Tensor]  # input clip [1,S,C,H,W] -> depth [1,S,H,W] metres


@torch.no_grad()
def predict_sequence(predict: Predictor, frames: Tensor, clip_len: int) -> Tensor:
    """Depth [F,H,W] of all frames [F,C,H,W] of one sequence, in clips of clip_len frames."""
    n = len(frames)
    if n < clip_len:
        raise ConfigError(f"sequence of {n} frames is shorter than the clip length {clip_len}")
    out = torch.zeros(n, *frames.shape[-2:])
    starts = list(range(0, n - clip_len + 1, clip_len))
    if starts[-1] + clip_len < n:
        starts.append(n - clip_len)
    for s in starts:
        out[s:s + clip_len] = predict(frames[s:s + clip_len][None])[0]
    return out


ALIGNS = ("median", "none", "ramnet")


def _per_frame(pred: Tensor, gt: Tensor, mask: Tensor, max_depth: float) -> dict[str, float]:
    """RAM-Net's convention: prediction [F,H,W] clipped to [0, max_depth] metres, each frame's metrics on the
    pixels whose prediction is at most the frame's farthest ground truth, averaged over frames (NaN-aware)."""
    pred = pred.clamp(0, max_depth)
    recs = []
    for f in range(len(pred)):
        if mask[f].any():
            keep = mask[f] & (pred[f] <= gt[f][mask[f]].max())
            if keep.any():
                recs.append(depth_metrics(pred[f], gt[f], keep))
    if not recs:
        raise ValueError("no frame with valid ground-truth pixels")
    return _nan_mean(recs)


def _nan_mean(recs: list[dict[str, float]]) -> dict[str, float]:
    """Per key, the mean of the records' values ignoring NaN (NaN where every value is NaN)."""
    return {k: float(np.nanmean([r[k] for r in recs])) if not all(math.isnan(r[k]) for r in recs) else float("nan")
            for k in recs[0]}


def _sequence_metrics(pred: Tensor, seq: Sequence, align: str, max_depth: float) -> dict[str, float]:
    mask = valid_depth(seq.depth, max_depth)
    if align == "ramnet":
        rec = _per_frame(pred, seq.depth, mask, max_depth)
        rec["jitter"] = temporal_jitter(pred.clamp(0, max_depth), seq.depth, mask)
        rec["scale"] = 1.0
        return rec
    scale = median_scale(pred, seq.depth, mask) if align == "median" else 1.0
    pred = pred * scale
    rec = depth_metrics(pred, seq.depth, mask)
    rec["jitter"] = temporal_jitter(pred, seq.depth, mask)
    rec["scale"] = scale
    return rec


def evaluate_depth(predict: Predictor, data: Path | EventClips, input_kind: str, clip_len: int, bins: int = 5,
                   align: str = "median", max_depth: float = 80.0) -> dict[str, float]:
    """Mean metrics over the sequences of ``data`` (depth_metrics keys, jitter, scale) for a predictor
    on "events" (voxel grids) or "rgb" (linear frames in [0,1]) input."""
    return evaluate_depth_aligns(predict, data, input_kind, clip_len, bins, (align,), max_depth)[align]


def evaluate_depth_aligns(predict: Predictor, data: Path | EventClips, input_kind: str, clip_len: int,
                          bins: int = 5, aligns: tuple[str, ...] = ALIGNS,
                          max_depth: float = 80.0) -> dict[str, dict[str, float]]:
    """`evaluate_depth` under each alignment of `aligns`, {align: metrics}, from one prediction per sequence."""
    bad = [a for a in aligns if a not in ALIGNS]
    if bad:
        raise ConfigError(f"--align must be one of {', '.join(ALIGNS)}, got {bad[0]!r}")
    clips = data if isinstance(data, EventClips) else EventClips(Path(data), clip_len, bins)
    recs: dict[str, list[dict[str, float]]] = {a: [] for a in aligns}
    for seq in clips.seqs:
        pred = predict_sequence(predict, seq.vox if input_kind == "events" else seq.rgb, clip_len)
        for a in aligns:
            recs[a].append(_sequence_metrics(pred, seq, a, max_depth))
    return {a: {**_nan_mean(r), "sequences": len(r)} for a, r in recs.items()}


def evaluate_depth_run(run: Path, data: Path, align: str = "median") -> dict[str, float]:
    """`evaluate_depth` of an RGB teacher or event student run on the sequences of `data`, with the run's clip
    length and time bins. Merges the metrics (keys + "_test") and "align" into RUN/metrics.json; returns them
    without the suffix."""
    net, cfg = load_net(run)
    kind = "rgb" if cfg["net"]["in_channels"] == 3 else "events"
    d = cfg.get("distill", {})
    predict = (lambda x: NetTeacher(net)(x)["depth"]) if kind == "rgb" else (lambda x: net(x)["depth"])
    metrics = evaluate_depth(predict, data, kind, d.get("clip_len", 4), d.get("bins", 5), align)
    update_metrics(run, {**{f"{k}_test": v for k, v in metrics.items()}, "align": align})
    return metrics
