"""Event-camera data with ground truth: camera trajectories through procedural streets, rendered at a
high rate for the event simulator, with RGB, metric z-depth and poses kept at the network frame rate.

A data set is a folder of `seq_NNNN/` (frames.npz: rgb float16 [F,H,W,3] linear, depth float32
[F,H,W] metres (0 = sky), c2w [F,4,4] OpenGL camera-to-world, times [F] s, fx fy cx cy; events.npz)
plus `meta.json`. Sequences are written to a temporary folder and renamed, so an interrupted run
keeps the finished ones and continues from there.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...cameras import Cameras, intrinsics_from_fov, look_at
from ...checkpoint import write_json
from ...errors import ConfigError, DataError
from .event_io import save_events
from .events import EventSimConfig, EventSimulator, concat_events, log_intensity
from .street import make_street, render_street

__all__ = ["SimConfig", "trajectory", "simulate_sequence", "simulate_dataset", "sequence_dirs"]


@dataclass
class SimConfig:
    """height, width: sensor pixels; fov_deg: horizontal field of view; seconds per sequence; fps: render
    rate fed to the event simulator; frame_rate: rate of the RGB/depth frames (and of the event windows
    the networks see); speed_mps: range of the forward speed; supersample: rays per pixel side."""

    height: int = 96
    width: int = 128
    fov_deg: float = 80.0
    seconds: float = 2.0
    fps: int = 100
    frame_rate: int = 20
    speed_mps: tuple[float, float] = (4.0, 8.0)
    supersample: int = 2
    events: EventSimConfig = field(default_factory=EventSimConfig)

    def __post_init__(self) -> None:
        if isinstance(self.events, dict):
            self.events = EventSimConfig(**self.events)
        self.speed_mps = tuple(self.speed_mps)
        if not (8 <= self.height <= 1024 and 8 <= self.width <= 1024):
            raise ConfigError(f"sensor size must be 8..1024 pixels, got {self.width}x{self.height}")
        if not (10 <= self.fov_deg <= 150):
            raise ConfigError(f"--fov must be in [10, 150] degrees, got {self.fov_deg}")
        if self.frame_rate < 1 or self.fps < self.frame_rate or self.fps % self.frame_rate:
            raise ConfigError(f"--fps ({self.fps}) must be a multiple of --frame-rate ({self.frame_rate})")
        if not (0 < self.seconds <= 600) or self.seconds * self.frame_rate < 2:
            raise ConfigError(f"--seconds must be in (0, 600] and give at least 2 frames, got {self.seconds}")
        if not (0 < self.speed_mps[0] <= self.speed_mps[1] <= 40) or not (1 <= self.supersample <= 4):
            raise ConfigError("speed must satisfy 0 < min <= max <= 40 m/s and supersample be 1..4")


def trajectory(seed: int, times: np.ndarray, speed: tuple[float, float]) -> torch.Tensor:
    """Camera-to-world [T,4,4] (OpenGL) of a car-mounted camera driving along +x: sideways sway, a small
    bob and yaw/pitch wobble around the heading; 1.2-1.8 m above the ground."""
    g = np.random.default_rng(seed)
    v = g.uniform(*speed)
    x0, y0, z0 = g.uniform(0, 30), g.uniform(-1.5, 1.5), g.uniform(1.2, 1.8)
    amp, freq, ph = g.uniform(0.3, 1.2), g.uniform(0.15, 0.4), g.uniform(0, 2 * math.pi)
    yaw_amp, yaw_f, yaw_ph = math.radians(g.uniform(3, 12)), g.uniform(0.2, 0.6), g.uniform(0, 2 * math.pi)
    t = np.asarray(times, np.float64)
    x = x0 + v * t
    y = y0 + amp * np.sin(2 * math.pi * freq * t + ph)
    z = z0 + 0.04 * np.sin(2 * math.pi * 1.7 * t)
    yaw = yaw_amp * np.sin(2 * math.pi * yaw_f * t + yaw_ph)
    pitch = math.radians(1.5) * np.sin(2 * math.pi * 0.9 * t)
    eye = torch.tensor(np.stack([x, y, z], 1), dtype=torch.float32)
    fwd = torch.tensor(np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], 1),
                       dtype=torch.float32)
    return look_at(eye, eye + fwd)


def simulate_sequence(seed: int, cfg: SimConfig, progress: Callable[[int, int], None] | None = None) -> dict:
    """Render one sequence and simulate its events. Returns frames (numpy arrays, see module doc) and
    the Events of the whole sequence."""
    n_hi = int(round(cfg.seconds * cfg.fps)) + 1
    every = cfg.fps // cfg.frame_rate
    times = np.arange(n_hi) / cfg.fps
    c2w = trajectory(seed, times, cfg.speed_mps)
    fx, fy, cx, cy = intrinsics_from_fov(math.radians(cfg.fov_deg), cfg.width, cfg.height)
    cams = Cameras(c2w, fx, fy, cx, cy, cfg.width, cfg.height)
    scene = make_street(seed)
    sim = EventSimulator(cfg.height, cfg.width, cfg.events, seed=seed)
    rgbs, depths, chunks = [], [], []
    for i in range(n_hi):
        keep = i % every == 0
        rgb, depth = render_street(scene, cams, i, supersample=cfg.supersample, with_depth=keep)
        chunks.append(sim.step(log_intensity(rgb), float(times[i])))
        if keep:
            rgbs.append(rgb.numpy().astype(np.float16))
            depths.append(depth.numpy().astype(np.float32))
        if progress:
            progress(i + 1, n_hi)
    return {"rgb": np.stack(rgbs), "depth": np.stack(depths), "c2w": c2w[::every].numpy(),
            "times": times[::every], "fx": fx, "fy": fy, "cx": cx, "cy": cy,
            "events": concat_events(chunks, cfg.width, cfg.height)}


def sequence_dirs(data: Path) -> list[Path]:
    """The finished `seq_NNNN` folders of a data set (DataError when there are none)."""
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"{data}: event data folder not found (make one with `v3kd event-depth simulate`)")
    seqs = sorted(p for p in data.glob("seq_[0-9][0-9][0-9][0-9]") if p.is_dir())
    if not seqs:
        raise DataError(f"{data}: no seq_NNNN folders (make them with `v3kd event-depth simulate`)")
    return seqs


def simulate_dataset(out: Path, n: int, seed: int, cfg: SimConfig,
                     progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write ``n`` sequences (scene/trajectory seeds seed, seed+1, ...) into ``out``; sequences already
    there are kept when meta.json matches (resume), and a different configuration is refused.
    ``progress`` gets one line per sequence, kept or new."""
    if not 1 <= n <= 10000:
        raise ConfigError(f"--sequences must be in [1, 10000], got {n}")
    out = Path(out)
    meta = {"config": asdict(cfg), "seed": seed}
    meta_path = out / "meta.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old.get("config") != json.loads(json.dumps(meta["config"])) or old.get("seed") != seed:
            raise ConfigError(f"{out}: holds a data set made with other settings; use a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(meta_path, meta)
    done = []
    for k in range(n):
        final = out / f"seq_{k:04d}"
        if not (final / "events.npz").is_file():
            tmp = out / f".seq_{k:04d}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            seq = simulate_sequence(seed + k, cfg)
            events = seq.pop("events")
            np.savez_compressed(tmp / "frames.npz", **seq)
            save_events(tmp / "events.npz", events)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            line = f"{final.name}: {len(seq['times'])} frames, {len(events)} events"
        else:
            line = f"{final.name}: kept"
        if progress:
            progress(line)
        done.append(final)
    return done
