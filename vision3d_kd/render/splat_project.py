"""Screen-space projection of 3D Gaussians (EWA splatting), shared by every splat rasterizer backend.

Frames: Gaussians live in the world frame; `viewmat` is world-to-camera in the OpenCV convention
(+X right, +Y down, +Z forward), intrinsics are pixels with pixel (i, j) centred at (i + 0.5, j + 0.5)
(the package's camera convention, also gsplat's). Everything here is differentiable by autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fields.encodings import sh_encoding
from ..fields.splats import SH_C0
from ..kernels.splat_ref import Projection

__all__ = ["quat_to_rotmat", "covariance_3d", "project_gaussians", "sh_colors"]

def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Quaternions [N,4] (wxyz, any norm) -> rotation matrices [N,3,3]."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances [N,3,3] = R S S^T R^T from quaternions [N,4] (wxyz) and scales [N,3] (world units)."""
    m = quat_to_rotmat(quats) * scales[:, None, :]
    return m @ m.transpose(1, 2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
) -> Projection:
    """EWA projection: camera-frame covariance through the perspective Jacobian plus `eps2d` pixels^2
    of low-pass dilation. Culls Gaussians behind `near`/beyond `far`, with a degenerate 2D covariance,
    or whose 3-sigma box misses the image. viewmat [4,4] world->camera (OpenCV); K [3,3] pixels."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ R.T + t
    z = p[:, 2]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    zs = z.clamp_min(near)  # keeps culled Gaussians finite; they are masked below
    # Clamp the Jacobian's x/z, y/z to a bit beyond the frustum (as 3DGS/gsplat) for stability.
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * width / fx, cx / fx + 0.3 * width / fx
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * height / fy, cy / fy + 0.3 * height / fy
    tx = torch.maximum(torch.minimum(p[:, 0] / zs, lim_xp), -lim_xn) * zs
    ty = torch.maximum(torch.minimum(p[:, 1] / zs, lim_yp), -lim_yn) * zs
    zero = torch.zeros_like(zs)
    J = torch.stack(
        [fx / zs, zero, -fx * tx / (zs * zs), zero, fy / zs, -fy * ty / (zs * zs)], dim=-1
    ).reshape(-1, 2, 3)
    cov_cam = R @ covariance_3d(quats, scales) @ R.T
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    ok_det = det > 1e-12
    inv_det = 1.0 / torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c * inv_det, -b * inv_det, a * inv_det], dim=-1)
    mid = 0.5 * (a + c)
    lam = mid + torch.sqrt((mid * mid - det).clamp_min(0.01))
    radii = torch.ceil(3.0 * torch.sqrt(lam.detach())).to(torch.int32)
    means2d = torch.stack([fx * p[:, 0] / zs + cx, fy * p[:, 1] / zs + cy], dim=-1)
    m = means2d.detach()
    on_screen = (m[:, 0] + radii > 0) & (m[:, 0] - radii < width) & (m[:, 1] + radii > 0) & (m[:, 1] - radii < height)
    visible = (z > near) & (z < far) & ok_det & on_screen
    radii = torch.where(visible, radii, torch.zeros_like(radii))
    return Projection(means2d, conics, z, radii, visible)


def sh_colors(sh: Tensor, means: Tensor, cam_center: Tensor, degree: int) -> Tensor:
    """View-dependent RGB [N,3] (>= 0) from SH coefficients sh [N,K,3] (first (degree+1)^2 used) for the
    world-frame direction camera centre -> mean; 3DGS convention: colour = SH . basis + 0.5."""
    n_coef = (degree + 1) ** 2
    if sh.shape[1] < n_coef:
        raise ValueError(f"SH degree {degree} needs {n_coef} coefficients, got {sh.shape[1]}")
    if degree == 0:
        basis = sh.new_full((sh.shape[0], 1), SH_C0)
    else:
        dirs = means - cam_center
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        basis = sh_encoding(dirs, degree + 1)
    rgb = (basis[:, :, None] * sh[:, :n_coef]).sum(1) + 0.5
    return rgb.clamp_min(0.0)
