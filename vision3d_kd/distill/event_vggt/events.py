"""Event camera model: a log-intensity contrast-threshold simulator and the voxel-grid representation.

Events are (x, y, t, p): pixel column and row (0-based, x < width, y < height), time in seconds
(non-decreasing) and polarity +1 (brighter) / -1 (darker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...errors import ConfigError

__all__ = ["Events", "EventSimConfig", "EventSimulator", "log_intensity", "voxel_grid", "concat_events"]


@dataclass
class Events:
    """An event stream on a ``width`` x ``height`` sensor; x, y int64, t float64 seconds, p int8 in {-1, +1}."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.t)

    def window(self, t0: float, t1: float) -> Events:
        """The events with t0 < t <= t1 (times are sorted, so this is a slice)."""
        i0, i1 = np.searchsorted(self.t, [t0, t1], side="right")
        return Events(self.x[i0:i1], self.y[i0:i1], self.t[i0:i1], self.p[i0:i1], self.width, self.height)


def concat_events(chunks: list[Events], width: int, height: int) -> Events:
    """One stream from time-ordered chunks."""
    if not chunks:
        e = np.zeros(0, np.int64)
        return Events(e, e.copy(), np.zeros(0), np.zeros(0, np.int8), width, height)
    return Events(*(np.concatenate([getattr(c, k) for c in chunks]) for k in ("x", "y", "t", "p")), width, height)


def log_intensity(rgb: Tensor, eps: float = 1e-3) -> Tensor:
    """log(eps + Y) of linear RGB [..., 3] in [0, 1], with Rec. 709 luminance Y."""
    lum = rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722
    return torch.log(eps + lum)


@dataclass
class EventSimConfig:
    """Sensor parameters. contrast: mean threshold C on log intensity; mismatch: per-pixel std of C;
    refractory_s: minimum time between two events of a pixel (later ones are dropped, the reference
    still moves); noise_rate_hz: spurious events per pixel and second (random polarity)."""

    contrast: float = 0.2
    mismatch: float = 0.03
    refractory_s: float = 1e-3
    noise_rate_hz: float = 0.0
    min_contrast: float = 0.01

    def __post_init__(self) -> None:
        if not (0 < self.contrast <= 5 and 0 <= self.mismatch < self.contrast):
            raise ConfigError(f"event contrast must be in (0, 5] and mismatch in [0, contrast), got "
                              f"{self.contrast}, {self.mismatch}")
        if self.refractory_s < 0 or self.noise_rate_hz < 0:
            raise ConfigError("refractory period and noise rate must be >= 0")


class EventSimulator:
    """Feeds log-intensity frames [H, W] with their times and emits the events between consecutive
    frames: log intensity is linear in time between frames, and every crossing of the pixel's
    reference level +- k*C emits one event at the interpolated crossing time (several per interval
    when the change spans several thresholds)."""

    def __init__(self, height: int, width: int, cfg: EventSimConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg or EventSimConfig()
        self.h, self.w = height, width
        self.gen = torch.Generator().manual_seed(seed)
        shape = (height * width,)
        c, s = self.cfg.contrast, self.cfg.mismatch
        lo = self.cfg.min_contrast
        self.c_pos = (c + s * torch.randn(shape, generator=self.gen, dtype=torch.float64)).clamp_min(lo)
        self.c_neg = (c + s * torch.randn(shape, generator=self.gen, dtype=torch.float64)).clamp_min(lo)
        self.ref: Tensor | None = None
        self.prev: Tensor | None = None
        self.prev_t = 0.0
        self.last_event = torch.full(shape, -math.inf, dtype=torch.float64)

    def reset(self, log_frame: Tensor, t: float) -> None:
        """Start at this frame: it becomes every pixel's reference level."""
        self.ref = log_frame.reshape(-1).double().clone()
        self.prev = self.ref.clone()
        self.prev_t = float(t)

    def step(self, log_frame: Tensor, t: float) -> Events:
        """Events between the previous frame and this one (time-sorted)."""
        if self.ref is None or self.prev is None:
            self.reset(log_frame, t)
            return concat_events([], self.w, self.h)
        if t <= self.prev_t:
            raise ConfigError(f"frame times must increase ({t} after {self.prev_t})")
        cur = log_frame.reshape(-1).double()
        t0, dt = self.prev_t, t - self.prev_t
        up = cur > self.ref
        thr = torch.where(up, self.c_pos, self.c_neg)
        # reference levels crossed; 1e-5 C of slack so that float32 frames reaching a level exactly count
        n = torch.floor((cur - self.ref).abs() / thr + 1e-5).long()
        sign = torch.where(up, 1.0, -1.0).double()
        pix = torch.nonzero(n > 0).flatten()
        xs, ts, ps = [], [], []
        if pix.numel():
            counts = n.index_select(0, pix)
            slope = (cur - self.prev).index_select(0, pix)
            base = self.ref.index_select(0, pix)
            step_c = (sign * thr).index_select(0, pix)
            last = self.last_event.index_select(0, pix)
            for k in range(1, int(counts.max()) + 1):
                live = counts >= k
                level = base + k * step_c
                frac = ((level - self.prev.index_select(0, pix)) / torch.where(slope == 0, 1.0, slope)).clamp(0, 1)
                tk = t0 + frac * dt
                ok = live & (tk - last >= self.cfg.refractory_s)
                last = torch.where(ok, tk, last)
                sel = torch.nonzero(ok).flatten()
                xs.append(pix.index_select(0, sel))
                ts.append(tk.index_select(0, sel))
                ps.append(torch.where(step_c.index_select(0, sel) > 0, 1, -1))
            self.last_event.index_copy_(0, pix, last)
        self.ref = self.ref + sign * thr * n
        self.prev, self.prev_t = cur, float(t)
        if self.cfg.noise_rate_hz > 0:
            m = int(torch.poisson(torch.tensor(self.cfg.noise_rate_hz * dt * self.h * self.w), generator=self.gen))
            xs.append(torch.randint(0, self.h * self.w, (m,), generator=self.gen))
            ts.append(t0 + dt * torch.rand(m, generator=self.gen, dtype=torch.float64))
            ps.append(torch.randint(0, 2, (m,), generator=self.gen) * 2 - 1)
        if not xs:
            return concat_events([], self.w, self.h)
        flat, tt, pp = torch.cat(xs), torch.cat(ts), torch.cat(ps)
        order = torch.argsort(tt, stable=True)
        flat, tt, pp = flat[order].numpy(), tt[order].numpy(), pp[order].numpy().astype(np.int8)
        return Events(flat % self.w, flat // self.w, tt, pp, self.w, self.h)


def voxel_grid(ev: Events, bins: int, t0: float, t1: float, normalize: bool = True) -> Tensor:
    """Voxel grid [bins, H, W] of the events with t0 <= t <= t1: each event's polarity is split between
    the two bins nearest its normalised time t* = (bins - 1)(t - t0)/(t1 - t0) (bilinear in time).
    normalize: shift and scale the non-zero entries to mean 0, std 1 (zeros stay zero)."""
    if bins < 1 or not t1 > t0:
        raise ConfigError(f"voxel grid needs bins >= 1 and t1 > t0 (got {bins}, {t0}, {t1})")
    h, w = ev.height, ev.width
    grid = torch.zeros(bins * h * w, dtype=torch.float64)
    if len(ev):
        t = torch.from_numpy(np.asarray(ev.t, np.float64))
        keep = (t >= t0) & (t <= t1)
        ts = (bins - 1) * (t[keep] - t0) / (t1 - t0)
        pix = torch.from_numpy(np.asarray(ev.y, np.int64) * w + np.asarray(ev.x, np.int64))[keep]
        pol = torch.from_numpy(np.asarray(ev.p, np.float64))[keep]
        lo = ts.floor().long().clamp(0, bins - 1)
        frac = ts - lo
        grid.index_add_(0, lo * h * w + pix, pol * (1 - frac))
        hi = lo + 1
        inside = hi < bins
        grid.index_add_(0, (hi * h * w + pix)[inside], (pol * frac)[inside])
    grid = grid.float().reshape(bins, h, w)
    if normalize:
        nz = grid != 0
        if int(nz.sum()) > 1:
            vals = grid[nz]
            grid[nz] = (vals - vals.mean()) / vals.std().clamp_min(1e-6)
    return grid
