"""Pose normalisation of captures: a similarity transform from the capture's world frame to the frame
the models are trained in (+Z up, centred on what the cameras look at, cameras inside [-1, 1]³).

The transform is a 4x4 matrix ``T = [[s R, t], [0, 1]]`` acting on capture-frame points
(``x_model = s R x_capture + t``); it is saved in the run so exports and renders can go back to the
capture's own frame (`apply_to_points` with its inverse).
"""

from __future__ import annotations

import numpy as np

__all__ = ["up_rotation", "focus_point", "normalizing_transform", "ngp_transform", "transform_c2w",
           "apply_to_points", "similarity_scale"]


def up_rotation(up: np.ndarray) -> np.ndarray:
    """The 3x3 rotation taking the unit vector `up` to +Z (the shortest arc; a half-turn about +X for -Z)."""
    up = up / np.linalg.norm(up)
    z = np.array([0.0, 0.0, 1.0])
    c = float(up @ z)
    if c < -1 + 1e-9:
        return np.diag([1.0, -1.0, -1.0])
    v = np.cross(up, z)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _up_direction(c2w: np.ndarray) -> np.ndarray:
    """The capture's up: the mean of the cameras' up axes (OpenGL +Y); when they cancel out (cameras
    rolled all around) the normal of the cameras' best-fit plane, signed to agree with them."""
    ups = c2w[:, :3, 1]
    mean = ups.mean(axis=0)
    if np.linalg.norm(mean) > 0.3 or len(c2w) < 3:
        return mean / max(np.linalg.norm(mean), 1e-12)
    centres = c2w[:, :3, 3] - c2w[:, :3, 3].mean(axis=0)
    normal = np.linalg.svd(centres, full_matrices=False)[2][-1]
    return normal if normal @ mean >= 0 else -normal


def focus_point(c2w: np.ndarray) -> np.ndarray:
    """The point [3] nearest (least squares) to every camera's optical axis (OpenGL: looking down -Z);
    the mean camera centre when the axes are near parallel (a forward-facing capture) or their meeting
    point lies far outside the cameras' spread."""
    origins, forward = c2w[:, :3, 3], -c2w[:, :3, 2]
    forward = forward / np.linalg.norm(forward, axis=1, keepdims=True)
    proj = np.eye(3)[None] - forward[:, :, None] * forward[:, None, :]
    a, b = proj.sum(axis=0), (proj @ origins[:, :, None]).sum(axis=0)[:, 0]
    centre = origins.mean(axis=0)
    spread = max(float(np.linalg.norm(origins - centre, axis=1).max()), 1e-9)
    if np.linalg.cond(a) > 1e6:
        return centre
    p = np.linalg.solve(a, b)
    return p if np.linalg.norm(p - centre) < 2 * spread else centre


def normalizing_transform(c2w: np.ndarray) -> np.ndarray:
    """T [4,4] (see module): rotate the cameras' up to +Z, move their focus point to the origin, scale so
    that the farthest camera centre has |x|∞ = 1 (the cameras fill [-1, 1]³, as nerfstudio does)."""
    rot = up_rotation(_up_direction(c2w))
    centre = focus_point(c2w)
    moved = (c2w[:, :3, 3] - centre) @ rot.T
    extent = float(np.abs(moved).max())
    scale = 1.0 / extent if extent > 1e-9 else 1.0
    t = np.eye(4)
    t[:3, :3] = scale * rot
    t[:3, 3] = -scale * rot @ centre
    return t


def ngp_transform(scale: float, offset: np.ndarray) -> np.ndarray:
    """T [4,4] of Instant-NGP's convention: NGP maps a capture point x to ``x * scale + offset`` and models
    its unit cube [0, 1]³ (the foreground; `aabb_scale` multiplies it). Here that cube becomes [-1, 1]³:
    x_model = 2 (x scale + offset - 0.5)."""
    t = np.eye(4)
    t[:3, :3] *= 2.0 * scale
    t[:3, 3] = 2.0 * (np.asarray(offset, dtype=np.float64) - 0.5)
    return t


def similarity_scale(t: np.ndarray) -> float:
    """The scale factor s of a similarity T (its cube root of |det| of the linear part)."""
    return float(abs(np.linalg.det(t[:3, :3])) ** (1.0 / 3.0))


def transform_c2w(t: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Cameras [N,4,4] (c2w) moved by the similarity T: centres map as points, axes rotate (stay unit)."""
    out = c2w.copy()
    s = similarity_scale(t)
    out[:, :3, :3] = (t[:3, :3] / s) @ c2w[:, :3, :3]
    out[:, :3, 3] = c2w[:, :3, 3] @ t[:3, :3].T + t[:3, 3]
    return out


def apply_to_points(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Points [N,3] mapped by the 4x4 affine T."""
    return x @ t[:3, :3].T + t[:3, 3]
