"""Rays through, and projections by, a distorted perspective `Lens` (OpenCV's distortion model).

Normalised coordinates are OpenCV's: ``x = X / Z``, ``y = Y / Z`` in a camera frame with +Z forward and
+Y down. Pixels follow the package convention (pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``)
and so does the lens' ``cx, cy``; the half-pixel shift cancels in ``(px - cx) / fx``. Poses ``c2w`` are
camera-to-world in the OpenGL convention (camera looks down -Z, +Y up). Everything runs in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .lens import Lens, UnsupportedLens

__all__ = ["distort", "undistort", "lens_rays", "project"]

_GL_FROM_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))


def _coefficients(lens: Lens) -> tuple[float, float, float, float, float]:
    """(k1, k2, p1, p2, k3) of a perspective lens; fisheye lenses are refused."""
    if lens.is_fisheye:
        raise UnsupportedLens("fisheye lenses are not supported for ray generation")
    d = list(lens.dist) + [0.0] * (5 - len(lens.dist))
    return d[0], d[1], d[2], d[3], d[4]


def _distort_with_jacobian(xy: Tensor, lens: Lens) -> tuple[Tensor, Tensor]:
    """Distorted normalised points [M, 2] and the Jacobian [M, 2, 2] of the map at undistorted xy [M, 2]."""
    k1, k2, p1, p2, k3 = _coefficients(lens)
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    g = 2.0 * k1 + r2 * (4.0 * k2 + 6.0 * k3 * r2)  # d radial / d r2, times 2
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    j = torch.empty(len(xy), 2, 2, dtype=xy.dtype)
    j[:, 0, 0] = radial + g * x * x + 2.0 * p1 * y + 6.0 * p2 * x
    j[:, 0, 1] = g * x * y + 2.0 * p1 * x + 2.0 * p2 * y
    j[:, 1, 0] = g * x * y + 2.0 * p1 * x + 2.0 * p2 * y
    j[:, 1, 1] = radial + g * y * y + 6.0 * p1 * y + 2.0 * p2 * x
    return torch.stack([xd, yd], dim=-1), j


def distort(xy: Tensor, lens: Lens) -> Tensor:
    """Distorted normalised coordinates [M, 2] of undistorted ones xy [M, 2] (OpenCV's model)."""
    return _distort_with_jacobian(xy.to(torch.float64), lens)[0]


def undistort(xy_d: Tensor, lens: Lens, iters: int = 30, tol: float = 1e-12) -> Tensor:
    """Undistorted normalised coordinates [M, 2] of distorted ones xy_d [M, 2], by Newton iteration.

    Exact to ``tol`` (normalised units); a point where the iteration does not converge (a lens folding
    over itself inside the image) raises ValueError rather than giving a wrong ray.
    """
    target = xy_d.to(torch.float64)
    xy = target.clone()
    for _ in range(iters):
        value, jac = _distort_with_jacobian(xy, lens)
        step = torch.linalg.solve(jac, (value - target)[:, :, None])[:, :, 0]
        xy = xy - step
        if step.abs().max() < tol:
            break
    residual = (distort(xy, lens) - target).abs().max() if len(xy) else torch.tensor(0.0)
    if not residual < 1e-9:
        raise ValueError(f"undistortion did not converge (residual {float(residual):.2e}); is the lens invertible?")
    return xy


def lens_rays(lens: Lens, c2w: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """World rays through pixel coordinates px, py [M] (package convention) of a camera at c2w [4, 4].

    Returns rays_o [M, 3] (the camera centre) and unit directions rays_d [M, 3], both float64 world.
    """
    c2w = c2w.to(torch.float64)
    xy_d = torch.stack([(px.double() - lens.cx) / lens.fx, (py.double() - lens.cy) / lens.fy], dim=-1)
    xy = undistort(xy_d, lens)
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
    xy_d = distort(xy, lens)
    pix = torch.stack([xy_d[:, 0] * lens.fx + lens.cx, xy_d[:, 1] * lens.fy + lens.cy], dim=-1)
    return pix, z

