"""Simulated handheld captures with ground truth: a procedural object in a textured room, seen through a
distorted phone lens from ~70 hand-held views of two image sizes, plus the sparse points SfM would give.

Every pixel is rendered exactly through the lens: each sub-pixel sample is undistorted (Newton iteration,
`lens_rays`) into its pinhole ray, which is then traced (the object sphere traced, the room intersected).
Poses are OpenGL camera-to-world (z up); lenses are COLMAP ``OPENCV`` cameras.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..cameras import look_at
from ..checkpoint import write_json
from ..errors import ConfigError, DataError
from .capture_io import CapturedFrame, write_capture
from .lens import Lens
from .lens_rays import lens_rays, project
from .procedural import Shading
from .room import CaptureScene, Room
from .sdf import SCENE_NAMES, scene_sdf

__all__ = [
    "CAPTURE_SHADING",
    "SparsePoints",
    "capture_lenses",
    "capture_poses",
    "render_view",
    "sparse_points",
    "render_capture",
    "write_capture_scene",
]

# (model, width, height, fx, fy, cx, cy, (k1, k2, p1, p2)): a landscape and a portrait phone camera.
_LENSES = (
    Lens("OPENCV", 160, 120, 132.0, 131.2, 80.6, 59.3, (-0.10, 0.02, 0.0012, -0.0008)),
    Lens("OPENCV", 120, 160, 124.0, 124.6, 59.5, 80.8, (-0.08, 0.015, -0.0006, 0.0010)),
)

# brighter ambient than the object scenes: walls facing away from the light keep enough contrast for SIFT
CAPTURE_SHADING = Shading(ambient=0.5)


@dataclass
class SparsePoints:
    """Surface points xyz float64 [P, 3] (world), their rendered colours rgb uint8 [P, 3] and
    visible bool [P, N]: which of the N views sees each point (unoccluded, inside its image)."""

    xyz: np.ndarray
    rgb: np.ndarray
    visible: np.ndarray


def capture_lenses(scale: float = 1.0) -> tuple[Lens, Lens]:
    """The landscape (160x120) and portrait (120x160) OPENCV lenses, image sizes times ``scale``."""
    out = []
    for lens in _LENSES:
        w, h = max(1, round(lens.width * scale)), max(1, round(lens.height * scale))
        out.append(lens.scaled(w / lens.width, h / lens.height, w, h))
    return out[0], out[1]


def capture_poses(n_views: int, seed: int = 0, object_radius: float = 1.0) -> Tensor:
    """Hand-held poses c2w float64 [n_views, 4, 4] (OpenGL, z up) walking once around the origin.

    Distance 2.55-3.45 object radii, elevation ~6-34 degrees, a few degrees of azimuth jitter and
    roll, each view aimed at a point within ~0.15 object radii of the centre (not at the centre).
    """
    rng = np.random.default_rng(seed)
    k = np.arange(n_views) / max(n_views, 1)
    azim = 2.0 * math.pi * k + rng.normal(0.0, 0.03, n_views)
    elev = np.radians(20.0 + 12.0 * np.sin(6.0 * math.pi * k + 0.7) + rng.normal(0.0, 1.5, n_views))
    radius = object_radius * (3.0 + 0.4 * np.sin(4.0 * math.pi * k) + rng.normal(0.0, 0.04, n_views))
    eye = radius[:, None] * np.stack([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)], -1)
    target = rng.normal(0.0, 0.08 * object_radius, (n_views, 3))
    c2w = look_at(torch.from_numpy(eye), torch.from_numpy(target), "+z")
    roll = np.radians(np.clip(rng.normal(0.0, 3.0, n_views), -7.0, 7.0))
    cos, sin = torch.from_numpy(np.cos(roll)), torch.from_numpy(np.sin(roll))
    rot = torch.zeros(n_views, 3, 3, dtype=torch.float64)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = cos, -sin, sin, cos, 1.0
    c2w[:, :3, :3] = c2w[:, :3, :3] @ rot  # roll about the camera's own view axis
    return c2w


def render_view(
    scene: CaptureScene, lens: Lens, c2w: Tensor, supersample: int = 2, shading: Shading | None = None
) -> Tensor:
    """Render one view through ``lens`` at c2w [4, 4]: rgb float32 [H, W, 3] in [0, 1], the mean of
    ``supersample``^2 exactly undistorted rays per pixel (a box filter in distorted pixel space),
    shaded by ``shading`` (default `CAPTURE_SHADING`)."""
    shading = shading or CAPTURE_SHADING
    h, w, s = lens.height, lens.width, supersample
    sub = (torch.arange(s, dtype=torch.float64) + 0.5) / s
    py = (torch.arange(h, dtype=torch.float64)[:, None, None, None] + sub[None, None, :, None]).expand(h, w, s, s)
    px = (torch.arange(w, dtype=torch.float64)[None, :, None, None] + sub[None, None, None, :]).expand(h, w, s, s)
    o, d = lens_rays(lens, c2w, px.reshape(-1), py.reshape(-1))
    _, on_object, x = scene.trace(o.float(), d.float())
    albedo, normal = scene.surface(x, on_object)
    radiance = shading.shade(albedo, normal).clamp(0.0, 1.0)
    return radiance.reshape(h, w, s * s, 3).mean(dim=2)


def _visible_from(scene: CaptureScene, view: CapturedFrame, x: Tensor) -> Tensor:
    """Which points x [P, 3] (on surfaces) a view sees: inside its image and unoccluded. Returns [P] bool."""
    c2w = torch.from_numpy(view.c2w)
    pix, z = project(view.lens, c2w, x)
    inside = (z > 1e-3) & (pix[:, 0] >= 0) & (pix[:, 0] < view.lens.width)
    inside &= (pix[:, 1] >= 0) & (pix[:, 1] < view.lens.height)
    idx = torch.nonzero(inside).flatten()
    out = torch.zeros(len(x), dtype=torch.bool)
    if idx.numel() == 0:
        return out
    o = c2w[:3, 3].expand(len(idx), 3)
    ray = x.index_select(0, idx).double() - o
    dist = ray.norm(dim=-1)
    t, _, _ = scene.trace(o.float(), (ray / dist[:, None]).float())
    out[idx] = (t.double() - dist).abs() < 1e-3 * (1.0 + dist)
    return out


def sparse_points(
    scene: CaptureScene, views: list[CapturedFrame], n_points: int, seed: int = 0, min_views: int = 2
) -> SparsePoints:
    """About ``n_points`` surface points as SfM would triangulate them: the hits of pixel-centre rays of
    random pixels of random views, kept when at least ``min_views`` views see them; colour = that pixel."""
    rng = np.random.default_rng(seed)
    n_cand = int(1.5 * n_points) + 16
    src = rng.integers(0, len(views), n_cand)
    xyz, rgb = [], []
    for i, view in enumerate(views):
        m = int((src == i).sum())
        if m == 0:
            continue
        ix, iy = rng.integers(0, view.lens.width, m), rng.integers(0, view.lens.height, m)
        o, d = lens_rays(view.lens, torch.from_numpy(view.c2w), torch.from_numpy(ix + 0.5), torch.from_numpy(iy + 0.5))
        _, _, x = scene.trace(o.float(), d.float())
        xyz.append(x)
        rgb.append(view.rgb[iy, ix])
    x_all = torch.cat(xyz)
    visible = torch.stack([_visible_from(scene, view, x_all) for view in views], dim=-1)
    keep = torch.nonzero(visible.sum(dim=-1) >= min_views).flatten()[:n_points]
    return SparsePoints(
        x_all.index_select(0, keep).double().numpy(), np.concatenate(rgb)[keep.numpy()], visible[keep].numpy()
    )


def render_capture(
    scene: CaptureScene, n_views: int = 72, supersample: int = 2, seed: int = 0, scale: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[CapturedFrame]:
    """Render ``n_views`` hand-held views (`capture_poses`); every third view uses the portrait lens.
    ``progress(done, total)`` is called after each view."""
    lenses = capture_lenses(scale)
    poses = capture_poses(n_views, seed)
    views = []
    for i in range(n_views):
        lens = lenses[1] if i % 3 == 2 else lenses[0]
        rgb = render_view(scene, lens, poses[i], supersample)
        rgb_u8 = (rgb * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
        views.append(CapturedFrame(f"frame_{i:04d}.png", rgb_u8, poses[i].numpy(), lens))
        if progress is not None:
            progress(i + 1, n_views)
    return views


def _capture_metadata(name: str, scene: CaptureScene, views: list[CapturedFrame]) -> dict[str, Any]:
    """The ``extra`` entries of transforms.json: scene name, each distinct lens and the room."""
    lenses: list[dict[str, Any]] = []
    for lens in dict.fromkeys(v.lens for v in views):
        model, params = lens.to_colmap()
        lenses.append({"width": lens.width, "height": lens.height, "model": model, "colmap_params": params,
                       "k1_k2_p1_p2": list(lens.dist)})
    return {"scene": name, "capture": {"distortion": lenses, "room": scene.room.to_dict()}}


def write_capture_scene(
    name: str, out_dir: str | Path, n_views: int = 72, supersample: int = 3, seed: int = 0, n_points: int = 3000,
    scale: float = 1.0, progress: Callable[[int, int], None] | None = None, num_threads: int | None = 1,
) -> Path:
    """Render scene ``name`` inside a `Room` as a hand-held capture into a new folder ``out_dir``.

    Writes (through `capture_io.write_capture`) images/, sparse/0 (COLMAP), transforms.json and
    sparse_pc.ply, then scene.json (the object SDF as `write_scene` writes it, plus ``room``).
    ``scale`` multiplies the image sizes (1: 160x120 and 120x160). ``num_threads`` caps torch's CPU
    threads while rendering (see `write_scene`).
    """
    if name not in SCENE_NAMES:
        raise ConfigError(f"unknown scene {name!r}; choose from {', '.join(SCENE_NAMES)}")
    if n_views < 3:
        raise ConfigError(f"a capture needs at least 3 views, got {n_views}")
    if supersample < 1 or n_points < 1 or not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"need supersample >= 1, n_points >= 1, scale > 0; got {supersample}, {n_points}, {scale}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; refusing to overwrite")
    scene = CaptureScene(scene_sdf(name), Room(seed=seed))
    old_threads = torch.get_num_threads()
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        views = render_capture(scene, n_views, supersample, seed, scale, progress)
        points = sparse_points(scene, views, n_points, seed)
    finally:
        torch.set_num_threads(old_threads)
    path = write_capture(out, views, points.xyz, points.rgb, extra=_capture_metadata(name, scene, views))
    write_json(path / "scene.json", scene.to_dict())
    return path
