"""Rays through, and projections by, a distorted `Lens` (OpenCV's models, `undistort.distort_normalized`).

Normalised coordinates are OpenCV's: ``x = X / Z``, ``y = Y / Z`` in a camera frame with +Z forward and
+Y down. Pixels follow the package convention (pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``)
and so does the lens' ``cx, cy``; the half-pixel shift cancels in ``(px - cx) / fx``. Poses ``c2w`` are
camera-to-world in the OpenGL convention (camera looks down -Z, +Y up). Everything runs in float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .lens import Lens
from .undistort import distort_normalized

__all__ = ["undistort_normalized", "lens_rays", "project"]

_GL_FROM_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))


def undistort_normalized(xy_d: Tensor, lens: Lens, iters: int = 30, tol: float = 1e-13) -> Tensor:
    """Undistorted normalised coordinates [M, 2] of distorted ones xy_d [M, 2], by Newton iteration on
    the lens' own forward model (Jacobian by central differences, accurate to ~1e-9 relative).

    Exact to ``tol`` (normalised units); a point where the iteration does not converge (a lens folding
    over itself inside the image) raises ValueError rather than giving a wrong ray.
    """
    target = xy_d.to(torch.float64).numpy()
    tx, ty = target[:, 0], target[:, 1]
    x, y, h = tx.copy(), ty.copy(), 1e-7
    for _ in range(iters):
        fx, fy = distort_normalized(lens, x, y)
        (ax, ay), (bx, by) = distort_normalized(lens, x + h, y), distort_normalized(lens, x - h, y)
        (cx, cy), (dx, dy) = distort_normalized(lens, x, y + h), distort_normalized(lens, x, y - h)
        j00, j10, j01, j11 = (ax - bx) / (2 * h), (ay - by) / (2 * h), (cx - dx) / (2 * h), (cy - dy) / (2 * h)
        det = j00 * j11 - j01 * j10
        step_x = (j11 * (fx - tx) - j01 * (fy - ty)) / det
        step_y = (j00 * (fy - ty) - j10 * (fx - tx)) / det
        x, y = x - step_x, y - step_y
        if not len(x) or max(np.abs(step_x).max(), np.abs(step_y).max()) < tol:
            break
    fx, fy = distort_normalized(lens, x, y)
    residual = max(np.abs(fx - tx).max(), np.abs(fy - ty).max()) if len(x) else 0.0
    if not residual < 1e-9:
        raise ValueError(f"undistortion did not converge (residual {residual:.2e}); is the lens invertible?")
    return torch.from_numpy(np.stack([x, y], axis=-1))


def lens_rays(lens: Lens, c2w: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """World rays through pixel coordinates px, py [M] (package convention) of a camera at c2w [4, 4].

    Returns rays_o [M, 3] (the camera centre) and unit directions rays_d [M, 3], both float64 world.
    """
    c2w = c2w.to(torch.float64)
    xy_d = torch.stack([(px.double() - lens.cx) / lens.fx, (py.double() - lens.cy) / lens.fy], dim=-1)
    xy = undistort_normalized(xy_d, lens)
    d_cv = torch.cat([xy, torch.ones(len(xy), 1, dtype=torch.float64)], dim=-1)
    d = d_cv @ (c2w[:3, :3] @ _GL_FROM_CV).T
    d = d / d.norm(dim=-1, keepdim=True)
    return c2w[:3, 3].expand(len(d), 3).clone(), d


def project(lens: Lens, c2w: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates [M, 2] (package convention) of world points x [M, 3] seen by a camera at c2w
    [4, 4], and their camera depth [M] along the view axis (world units; <= 0 behind the camera)."""
    c2w = c2w.to(torch.float64)
    x_cv = (x.to(torch.float64) - c2w[:3, 3]) @ (c2w[:3, :3] @ _GL_FROM_CV)
    z = x_cv[:, 2]
    xy = x_cv[:, :2] / torch.where(z > 1e-9, z, torch.ones_like(z))[:, None]
    xd, yd = distort_normalized(lens, xy[:, 0].numpy(), xy[:, 1].numpy())
    pix = torch.from_numpy(np.stack([xd * lens.fx + lens.cx, yd * lens.fy + lens.cy], axis=-1))
    return pix, z

