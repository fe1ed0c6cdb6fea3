"""Depth from a recorded or simulated event stream with a trained event student (what `v3kd event-depth
predict` does): one depth map per window of events, predicted in clips of the student's clip length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...checkpoint import atomic_write
from ...errors import ConfigError
from .evaluate import predict_sequence
from .event_io import load_events
from .events import voxel_grid
from .teacher import load_net

__all__ = ["predict_depth", "write_depth_prediction"]


def predict_depth(run: Path, events: Path, window: float = 0.05, width: int | None = None,
                  height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Depth maps of event student `run` for consecutive (end - window, end] windows of the event file `events`
    (.npz / .h5; `width`/`height`: the sensor size when the file does not store it), from the first event on,
    at least one clip length of them. Returns (depth [F,H,W] float32 metres, window end times [F] seconds)."""
    if not window > 0:
        raise ConfigError("--window must be > 0")
    net, cfg = load_net(run)
    if cfg["net"]["in_channels"] == 3:
        raise ConfigError(f"{run}: an RGB teacher, not an event student")
    clip_len = cfg.get("distill", {}).get("clip_len", 4)
    ev = load_events(events, width, height)
    if len(ev) == 0:
        raise ConfigError(f"{events}: holds no events")
    t0 = float(ev.t[0]) - 1e-9  # windows are (start, end]
    n = max(clip_len, int(np.ceil((float(ev.t[-1]) - t0) / window)))
    ends = t0 + window * np.arange(1, n + 1)
    bins = cfg["net"]["in_channels"]
    vox = torch.stack([voxel_grid(ev.window(e - window, e), bins, e - window, e) for e in ends])
    p = cfg["net"]["patch"]
    if ev.height % p or ev.width % p:
        raise ConfigError(f"{events}: sensor {ev.width}x{ev.height} must be a multiple of the student's patch {p}")
    depth = predict_sequence(lambda x: net(x)["depth"], vox, clip_len)
    return depth.numpy().astype(np.float32), ends


def write_depth_prediction(run: Path, events: Path, out: Path, window: float = 0.05, width: int | None = None,
                           height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`predict_depth` written atomically to `out` (.npz with depth [F,H,W] metres and times [F] seconds);
    returns (depth, times)."""
    if Path(out).suffix != ".npz":
        raise ConfigError(f"--out {out}: must be a .npz file")
    depth, times = predict_depth(run, events, window, width, height)
    atomic_write(out, lambda f: np.savez_compressed(f, depth=depth, times=times))
    return depth, times
