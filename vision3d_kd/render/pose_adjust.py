"""Small rigid corrections of camera poses, for poses that are estimates (structure from motion, phones).

A correction `delta` = (ω, t) [6] rotates a camera's rays about its centre by R(ω) (axis-angle, radians,
world frame) and moves the centre by t (world units): d' = R(ω) d, o' = o + t — the same as
c2w' = [R(ω) R_c2w | o + t]. Training refines one per training image (`PoseAdjustment`, gradients reach
it through the sample positions and the view directions); `align_pose` fits one to a held-out image with
the field frozen, so that a field trained on estimated poses is scored where the held-out camera really
looked (BARF's test-time photometric alignment).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..cameras import Cameras, image_rays
from .occupancy import OccupancyGrid
from .volume import RenderConfig, ray_background, render_rays

__all__ = ["so3_exp", "adjust_rays", "adjust_cameras", "PoseAdjustment", "align_pose"]


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices [N,3,3] of axis-angle vectors [N,3] (radians), Rodrigues' formula; exact and
    differentiable at 0 (a Taylor expansion below 1e-4 rad)."""
    theta2 = (omega * omega).sum(-1, keepdim=True)[..., None]  # [N,1,1]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    wx, wy, wz = omega.unbind(-1)
    zero = torch.zeros_like(wx)
    k = torch.stack([zero, -wz, wy, wz, zero, -wx, -wy, wx, zero], -1).reshape(*omega.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def adjust_rays(rays_o: Tensor, rays_d: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
    """Rays [R,3] of cameras corrected by `delta` [R,6] (each ray's camera's): o + t, R(ω) d (unit stays unit)."""
    rot = so3_exp(delta[:, :3])
    return rays_o + delta[:, 3:], torch.einsum("rij,rj->ri", rot, rays_d)


def adjust_cameras(cams: Cameras, delta: Tensor) -> Cameras:
    """`cams` with every pose corrected by its row of `delta` [N,6]."""
    c2w = cams.c2w.clone()
    d = delta.to(c2w)
    c2w[:, :3, :3] = so3_exp(d[:, :3]) @ c2w[:, :3, :3]
    c2w[:, :3, 3] = c2w[:, :3, 3] + d[:, 3:]
    return Cameras(c2w, cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height)


class PoseAdjustment(nn.Module):
    """One learnable correction (ω, t) per training image, starting at zero (the given poses)."""

    def __init__(self, n_images: int) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(n_images, 6))

    def forward(self, rays_o: Tensor, rays_d: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        """Rays [R,3] of images `image` [R] (int64) with their images' corrections."""
        return adjust_rays(rays_o, rays_d, self.delta.index_select(0, image))

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        """How far the poses moved: rotation in degrees and translation in scene units, mean and max."""
        rot = self.delta[:, :3].norm(dim=1) * (180.0 / math.pi)
        trans = self.delta[:, 3:].norm(dim=1)
        return {"pose_rot_deg_mean": float(rot.mean()), "pose_rot_deg_max": float(rot.max()),
                "pose_trans_mean": float(trans.mean()), "pose_trans_max": float(trans.max())}


def align_pose(field, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, index: int,
               target: Tensor, background: str = "white", steps: int = 100, rays: int = 4096, lr: float = 5e-3,
               seed: int = 0) -> Tensor:
    """The correction [6] of camera `index` that best explains `target` [H,W,3] (on `background`) through
    the frozen `field`: Adam on the photometric MSE of `rays` random pixels per step, lr decaying 10x."""
    rays_o, rays_d = image_rays(cams, index)
    colour = target.reshape(-1, 3).to(rays_o)
    delta = torch.zeros(6, device=rays_o.device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    gen = torch.Generator(device=rays_o.device).manual_seed(seed)
    frozen = [p for p in field.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr * 0.1 ** (step / max(1, steps - 1))
            idx = torch.randint(0, colour.shape[0], (min(rays, colour.shape[0]),), generator=gen, device=gen.device)
            bg = ray_background(background, idx.numel(), rays_o.device)
            with torch.enable_grad():  # callers may be under no_grad (evaluation)
                o, d = adjust_rays(rays_o[idx], rays_d[idx], delta.expand(idx.numel(), 6))
                out = render_rays(field, o, d, grid, bg, settings)
                loss = torch.mean((out["rgb"] - colour[idx]) ** 2)
            if not loss.requires_grad:  # no ray met the field: nothing to align on this step
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return delta.detach()
