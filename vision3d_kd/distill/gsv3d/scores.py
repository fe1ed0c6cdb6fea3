"""Scores of image-to-3D results against the orbit's ground truth (`data/object_orbits.py`):

- `reprojection_error`: multi-view consistency of V views of one ring — each pixel where the true surface is
  seen is lifted to 3D with the TRUE depth and looked up in the neighbouring views (1 and 2 steps around the
  ring) where that point is visible (true depth agrees within 3 %); mean absolute RGB difference in [0, 1].
  The world is Lambertian under a fixed light, so true views score ~0 and a consistent 3D object's renders
  score what its geometry gets wrong.
- `surface_points` / `chamfer`: points where rendered (or true) depth says the surface is, and the symmetric
  mean nearest-neighbour distance between two such sets (scene units; the objects are ~1.4 across)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...cameras import Cameras, camera_rays

__all__ = ["reprojection_error", "surface_points", "chamfer"]


def _lift(cams: Cameras, i: int, ray_depth: Tensor) -> Tensor:
    """World points [H,W,3] of camera i's pixel centres at ray distances [H,W]."""
    h, w = cams.height, cams.width
    iy, ix = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    o, d = camera_rays(cams, torch.full((h * w,), i), ix.reshape(-1) + 0.5, iy.reshape(-1) + 0.5)
    return (o + ray_depth.reshape(-1, 1) * d).reshape(h, w, 3)


def _project(cams: Cameras, j: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates [M,2] (x, y; pixel centres at +0.5) of world points [M,3] in camera j, and their
    distance from its centre [M]; points behind the camera get coordinates outside the image."""
    c2w = cams.c2w[j]
    rel = x - c2w[:3, 3]
    cam = rel @ c2w[:3, :3]  # OpenGL camera frame: looking down −z
    z = -cam[:, 2]
    u = cams.fx[j] * cam[:, 0] / z.clamp_min(1e-6) + cams.cx[j]
    v = -cams.fy[j] * cam[:, 1] / z.clamp_min(1e-6) + cams.cy[j]
    bad = z <= 1e-6
    u = torch.where(bad, torch.full_like(u, -1e6), u)
    return torch.stack([u, v], -1), rel.norm(dim=-1)


def _sample(img: Tensor, uv: Tensor) -> Tensor:
    """Bilinear samples [M,C] of img [H,W,C] at pixel coordinates uv [M,2] (border values outside)."""
    h, w = img.shape[:2]
    grid = torch.stack([uv[:, 0] / w * 2 - 1, uv[:, 1] / h * 2 - 1], -1).reshape(1, -1, 1, 2)
    out = F.grid_sample(img.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T


def reprojection_error(views: Tensor, cams: Cameras, opacity: Tensor, ray_depth: Tensor, steps=(1, 2),
                       tolerance: float = 0.03) -> float:
    """Mean |views_i(p) − views_j(π_j(X_i(p)))| over ring neighbours j = i ± steps (module docstring); views
    [V,H,W,3] in [0,1], cams [V] in ring order, true opacity [V,H,W] and ray depth [V,H,W] (0 on a miss)."""
    v = len(cams)
    total, count = 0.0, 0
    for i in range(v):
        seen = (opacity[i] > 0.5) & (ray_depth[i] > 0)
        if not seen.any():
            continue
        x = _lift(cams, i, ray_depth[i])[seen]
        colour = views[i][seen]
        for s in steps:
            for j in {(i + s) % v, (i - s) % v} - {i}:
                uv, dist = _project(cams, j, x)
                inside = (uv[:, 0] >= 0.5) & (uv[:, 0] <= cams.width - 0.5) & (uv[:, 1] >= 0.5) & \
                    (uv[:, 1] <= cams.height - 0.5)
                d_true = _sample(ray_depth[j][..., None], uv)[:, 0]
                o_true = _sample(opacity[j][..., None], uv)[:, 0]
                vis = inside & (o_true > 0.5) & ((d_true - dist).abs() <= tolerance * dist)
                if vis.any():
                    diff = (_sample(views[j], uv[vis]) - colour[vis]).abs().mean(-1)
                    total += float(diff.sum())
                    count += int(vis.sum())
    return total / count if count else float("nan")


def surface_points(cams: Cameras, opacity: Tensor, camera_z: Tensor | None = None, ray_depth: Tensor | None = None,
                   max_points: int = 20000, seed: int = 0) -> Tensor:
    """World points [M,3] where opacity [K,H,W] > 0.5, from camera-z depth (renders) or ray depth (truth),
    at most `max_points` (a seeded subset)."""
    pts = []
    for k in range(len(cams)):
        keep = opacity[k] > 0.5
        if ray_depth is not None:
            dist = ray_depth[k]
            keep = keep & (dist > 0)  # an edge pixel's coverage can exceed 0.5 while its centre ray misses
        else:
            h, w = cams.height, cams.width
            iy, ix = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            _, d = camera_rays(cams, torch.full((h * w,), k), ix.reshape(-1) + 0.5, iy.reshape(-1) + 0.5)
            cos = (d * -cams.c2w[k, :3, 2]).sum(-1).reshape(h, w)
            dist = camera_z[k] / cos
        pts.append(_lift(cams, k, dist)[keep])
    p = torch.cat(pts)
    if len(p) > max_points:
        p = p[torch.randperm(len(p), generator=torch.Generator().manual_seed(seed))[:max_points]]
    return p


def chamfer(a: Tensor, b: Tensor, chunk: int = 4096) -> float:
    """Symmetric Chamfer distance: (mean_a min_b ‖a−b‖ + mean_b min_a ‖b−a‖) / 2 (scene units); inf if a set is
    empty."""
    if len(a) == 0 or len(b) == 0:
        return float("inf")

    def one_way(x: Tensor, y: Tensor) -> float:  # exact distances (the matmul form is off by ~1e-5)
        near = [torch.cdist(x[i:i + chunk], y, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
                for i in range(0, len(x), chunk)]
        return float(torch.cat(near).mean())

    return 0.5 * (one_way(a, b) + one_way(b, a))
