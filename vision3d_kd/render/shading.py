"""Shading augmentation for text-to-3D (DreamFusion / Magic3D): per-sample colours are replaced by
albedo, Lambertian-shaded albedo or a textureless (uniform grey albedo) Lambertian render before
compositing, with normals n = −∇σ / ‖∇σ‖ from forward differences of the density (world units, step
`fd_step`). A `Shader` also returns DreamFusion's orientation penalty per sample, max(0, n·d)² for the
ray direction d (normals facing away from the camera), which `render_rays` weights and averages.

Lambertian: c' = c · (ambient + (1 − ambient) · max(0, n·l)), l the unit direction towards the light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Shader", "density_normals", "random_light", "MODES", "TEXTURELESS_ALBEDO"]

MODES = ("albedo", "lambertian", "textureless")
TEXTURELESS_ALBEDO = 0.75


def density_normals(field, x: Tensor, sigma: Tensor, fd_step: float) -> Tensor:
    """Unit normals [S,3] = −∇σ/‖∇σ‖ at x [S,3] from forward differences (σ [S] given at x);
    differentiable w.r.t. the field's parameters."""
    eye = torch.eye(3, dtype=x.dtype, device=x.device) * fd_step
    shifted = (x[None, :, :] + eye[:, None, :]).reshape(-1, 3)
    s_shift = field.density(shifted).reshape(3, -1)
    grad = (s_shift - sigma.reshape(1, -1)).T / fd_step
    return F.normalize(-grad, dim=-1, eps=1e-12)


def random_light(generator: torch.Generator, elevation_deg: tuple[float, float] = (20.0, 80.0)) -> Tensor:
    """Unit direction [3] towards a light at a random azimuth and elevation (degrees, z up)."""
    u = torch.rand(2, generator=generator)
    el = math.radians(elevation_deg[0] + (elevation_deg[1] - elevation_deg[0]) * float(u[0]))
    az = 2 * math.pi * float(u[1])
    return torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


@dataclass
class Shader:
    """Per-sample shading hook for `render_rays` (see the module docstring)."""

    field: object
    mode: str = "lambertian"
    light: Tensor | None = None
    ambient: float = 0.4
    fd_step: float = 0.01
    orientation: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown shading {self.mode!r}; choose one of {', '.join(MODES)}")

    def __call__(self, x: Tensor, sigma: Tensor, rgb: Tensor, rays_d: Tensor,
                 ray_indices: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(shaded rgb [S,3], {"orientation": [S]} or {})."""
        need_normals = self.mode != "albedo" or self.orientation
        if not need_normals:
            return rgb, {}
        n = density_normals(self.field, x, sigma, self.fd_step)
        penalties = {}
        if self.orientation:
            penalties["orientation"] = (n * rays_d[ray_indices]).sum(-1).clamp_min(0.0) ** 2
        if self.mode == "albedo":
            return rgb, penalties
        light = self.light if self.light is not None else torch.tensor([0.0, 0.0, 1.0])
        diffuse = (n * light.to(n)).sum(-1, keepdim=True).clamp_min(0.0)
        albedo = rgb if self.mode == "lambertian" else torch.full_like(rgb, TEXTURELESS_ALBEDO)
        return albedo * (self.ambient + (1.0 - self.ambient) * diffuse), penalties
