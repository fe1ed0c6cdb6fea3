"""Exports in the capture's own frame: undo the pose normalisation a run was trained under.

A run on a real capture is trained in a model frame (+Z up, centred, cameras in [-1, 1]³); its config
keeps the similarity T (capture -> model, ``x_model = s R x_capture + t``). `--frame capture` maps what
is exported back with T⁻¹: ``x_capture = Rᵀ (x_model - t) / s``; Gaussians also turn (quaternions and
SH coefficients rotate by Rᵀ) and shrink (log-scales minus log s).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from ..data.axes import turn_splat_arrays
from ..data.normalize import similarity_scale
from ..errors import ConfigError
from .mesh import Mesh

__all__ = ["FRAMES", "check_frame", "mesh_to_capture", "points_to_capture", "splats_to_capture"]

FRAMES = ("normalized", "capture")


def check_frame(frame: str) -> None:
    """ConfigError unless `frame` is one of FRAMES."""
    if frame not in FRAMES:
        raise ConfigError(f"--frame must be one of {', '.join(FRAMES)}, got {frame!r}")


def _parts(t: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) of a similarity T (4x4)."""
    s = similarity_scale(t)
    return s, t[:3, :3] / s, t[:3, 3]


def points_to_capture(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Model-frame points [N,3] in the capture's frame (T⁻¹ applied)."""
    s, rot, shift = _parts(t)
    return ((x - shift) @ rot) / s


def mesh_to_capture(mesh: Mesh, t: np.ndarray) -> Mesh:
    """The mesh in the capture's frame (a similarity keeps faces, colours and texture as they are)."""
    verts = points_to_capture(mesh.vertices.astype(np.float64), t).astype(np.float32)
    return dataclasses.replace(mesh, vertices=verts, info={**mesh.info, "frame": "capture"})


def splats_to_capture(params: dict[str, Tensor], t: np.ndarray) -> dict[str, Tensor]:
    """Gaussians (splat_io layout) in the capture's frame: centres mapped, orientations and view-dependent
    colour (SH) turned by Rᵀ, sizes divided by s."""
    s, rot, shift = _parts(t)
    arrays = {k: v.detach().double().cpu().numpy() for k, v in params.items()}
    arrays["means"] = arrays["means"] - shift
    turned = turn_splat_arrays(arrays, rot.T)
    turned["means"] = turned["means"] / s
    turned["log_scales"] = arrays["log_scales"] - math.log(s)
    return {k: torch.tensor(v, dtype=params[k].dtype) for k, v in turned.items()}
