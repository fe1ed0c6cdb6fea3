"""Clips of an event data set in memory: for every frame k >= 1 of a sequence, the event voxel grid of
the window (t_{k-1}, t_k], the RGB frame at t_k and its ground-truth depth. A clip is ``clip_len``
consecutive such frames of one sequence.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from .event_io import load_events
from .events import voxel_grid
from .simulate import sequence_dirs

__all__ = ["Sequence", "load_sequence", "EventClips", "SKY_DEPTH"]

SKY_DEPTH = 100.0  # metres: the depth target for pixels without ground truth (sky), see `depth_target`


@dataclass
class Sequence:
    """vox [F-1, bins, H, W], rgb [F-1, 3, H, W] linear, depth [F-1, H, W] metres (0 = sky), times [F-1]."""

    name: str
    vox: Tensor
    rgb: Tensor
    depth: Tensor
    times: np.ndarray


def load_sequence(seq: Path, bins: int) -> Sequence:
    """Read seq/frames.npz and seq/events.npz and build the voxel grids (DataError on bad files)."""
    path = seq / "frames.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            rgb, depth, times = f["rgb"], f["depth"], f["times"]
    except FileNotFoundError:
        raise DataError(f"{path}: frames file not found") from None
    except (KeyError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a frames file ({str(exc).splitlines()[0]})") from None
    ev = load_events(seq / "events.npz")
    if rgb.shape[1:3] != (ev.height, ev.width) or len(rgb) < 2:
        raise DataError(f"{seq}: frames {rgb.shape[1:3]} and events {ev.height}x{ev.width} disagree")
    vox = torch.stack([voxel_grid(ev.window(times[k - 1], times[k]), bins, times[k - 1], times[k])
                       for k in range(1, len(times))])
    return Sequence(seq.name, vox, torch.from_numpy(rgb[1:].astype(np.float32)).permute(0, 3, 1, 2),
                    torch.from_numpy(depth[1:].astype(np.float32)), times[1:])


class EventClips:
    """All sequences of a data folder and the index of their clips (sequence, first frame)."""

    def __init__(self, data: Path, clip_len: int = 4, bins: int = 5, limit: int | None = None) -> None:
        self.seqs = [load_sequence(p, bins) for p in sequence_dirs(data)[:limit]]
        self.clip_len, self.bins = clip_len, bins
        self.index = [(i, k) for i, s in enumerate(self.seqs) for k in range(len(s.times) - clip_len + 1)]
        if not self.index:
            raise DataError(f"{data}: sequences are shorter than a clip of {clip_len} frames")

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, ids: list[int]) -> dict[str, Tensor]:
        """vox [B,S,bins,H,W], rgb [B,S,3,H,W], depth [B,S,H,W] of the clips with these indices."""
        parts = [(self.seqs[i], k) for i, k in (self.index[j] for j in ids)]
        s = self.clip_len
        return {name: torch.stack([getattr(q, name)[k:k + s] for q, k in parts]) for name in ("vox", "rgb", "depth")}
