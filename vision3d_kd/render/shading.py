"""Shading augmentation for text-to-3D (DreamFusion / Magic3D): per-sample colours are replaced by
albedo, Lambertian-shaded albedo or a textureless (uniform grey albedo) Lambertian render before
compositing, with normals n = −∇σ / ‖∇σ‖ from forward differences of the density (world units, step
`fd_step`). A `Shader` also returns DreamFusion's orientation penalty per sample, max(0, n·d)² for the
ray direction d (normals facing away from the camera), which `render_rays` weights and averages.
Given a mask of the samples that matter (`render_rays`: weight ≥ `RenderConfig.shade_weight_min`), only
those get −∇σ (three density evaluations each); the rest face the camera, n = −d (no penalty), which
changes a pixel by at most their summed weight. `albedo_scale` multiplies the field's colour before shading
(the gray proxy of `guidance.white_proxy`). With `smooth_step` > 0 a Shader also returns the colour-smoothness
penalty per sample (those samples only), ‖logit c(x) − logit c(x + δ)‖₁ / 3 for the field's colour c in (0, 1)
(clamped to [1e-4, 1 − 1e-4]) and a random offset δ ~ N(0, smooth_step² I) (world units): Fantasia3D's albedo
smoothness, against colour speckle, taken on the colour head's logits because on the colours themselves a
saturated colour pays nothing (a screening run went pure white; bench/TUNING.md). With `smooth_colour_only` both
colours come from geometry features computed without gradient, so the penalty trains the colour head alone and
cannot reshape the density through the features the density shares.

Lambertian: c' = c · (ambient + (1 − ambient) · max(0, n·l)) with the light and ambient of a
`data.procedural.Shading` (the shading the bundled prior's training images were rendered with).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.procedural import Shading

__all__ = ["Shader", "density_normals", "MODES", "TEXTURELESS_ALBEDO"]

MODES = ("albedo", "lambertian", "textureless")
TEXTURELESS_ALBEDO = 0.75
LOGIT_EPS = 1e-4  # colours are clamped to [eps, 1 − eps] before the smoothness penalty's logit


def _logit(c: Tensor) -> Tensor:
    return torch.logit(c.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS))


def density_normals(field, x: Tensor, sigma: Tensor, fd_step: float) -> Tensor:
    """Unit normals [S,3] = −∇σ/‖∇σ‖ at x [S,3] from forward differences (σ [S] given at x);
    differentiable w.r.t. the field's parameters."""
    eye = torch.eye(3, dtype=x.dtype, device=x.device) * fd_step
    shifted = (x[None, :, :] + eye[:, None, :]).reshape(-1, 3)
    s_shift = field.density(shifted).reshape(3, -1)
    grad = (s_shift - sigma.reshape(1, -1)).T / fd_step
    return F.normalize(-grad, dim=-1, eps=1e-12)


@dataclass
class Shader:
    """Per-sample shading hook for `render_rays` (see the module docstring)."""

    field: object
    mode: str = "lambertian"
    shading: Shading = dc_field(default_factory=Shading)
    fd_step: float = 0.01
    orientation: bool = True
    albedo_scale: Tensor | None = None  # [3] factor on the field's colour in albedo and Lambertian renders
    freeze_albedo: bool = False  # with albedo_scale: the scaled colour carries no gradient (only the density learns)
    smooth_step: float = 0.0  # > 0: also the colour-smoothness penalty at offsets of this std (world units)
    smooth_colour_only: bool = False  # the penalty's gradient reaches the colour head only (module docstring)
    generator: torch.Generator | None = None  # draws the smoothness offsets

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown shading {self.mode!r}; choose one of {', '.join(MODES)}")

    def __call__(self, x: Tensor, sigma: Tensor, rgb: Tensor, rays_d: Tensor, ray_indices: Tensor,
                 shaded: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """(shaded rgb [S,3], penalties {"orientation": [S], "albedo_smooth": [S]}, each when asked for);
        `shaded` [S] bool: the samples whose normals come from the density and whose colour is smoothed (None:
        all; module docstring)."""
        idx = None if shaded is None else shaded.nonzero().flatten()  # the samples to smooth and to give −∇σ
        penalties = {}
        if self.smooth_step > 0:
            penalties["albedo_smooth"] = self._smoothness(x, rgb, rays_d, ray_indices, idx)
        if self.albedo_scale is not None and self.mode != "textureless":
            rgb = (rgb.detach() if self.freeze_albedo else rgb) * self.albedo_scale.to(rgb)
        need_normals = self.mode != "albedo" or self.orientation
        if not need_normals:
            return rgb, penalties
        if idx is None:
            n = density_normals(self.field, x, sigma, self.fd_step)
        else:
            n = F.normalize(-rays_d[ray_indices], dim=-1)
            if idx.numel():
                n = n.index_copy(0, idx, density_normals(self.field, x[idx], sigma[idx], self.fd_step))
        if self.orientation:
            penalties["orientation"] = (n * rays_d[ray_indices]).sum(-1).clamp_min(0.0) ** 2
        if self.mode == "albedo":
            return rgb, penalties
        albedo = rgb if self.mode == "lambertian" else torch.full_like(rgb, TEXTURELESS_ALBEDO)
        return self.shading.shade(albedo, n), penalties

    def _smoothness(self, x: Tensor, rgb: Tensor, rays_d: Tensor, ray_indices: Tensor, idx: Tensor | None
                    ) -> Tensor:
        """‖logit c(x) − logit c(x + δ)‖₁ / 3 [S] for the samples `idx` (indices; all when None; 0 for the rest),
        with the field's colours `rgb` [S,3] at x and δ ~ N(0, smooth_step² I) (world units)."""
        xs, ri, c = (x, ray_indices, rgb) if idx is None else (x[idx], ray_indices[idx], rgb[idx])
        if xs.shape[0] == 0:
            return rgb.new_zeros(rgb.shape[0])
        delta = torch.randn(xs.shape, generator=self.generator, device=xs.device, dtype=xs.dtype) * self.smooth_step
        if self.smooth_colour_only:
            with torch.no_grad():
                _, geo = self.field.block(torch.cat([xs, xs + delta]))
            d_enc = self.field.encode_dirs(rays_d)[torch.cat([ri, ri])]
            c, c2 = self.field.color_from_dirs(geo, d_enc).chunk(2)
        else:
            _, c2 = self.field.forward_rays(xs + delta, rays_d, ri)
        p = (_logit(c) - _logit(c2)).abs().mean(-1)
        return p if idx is None else rgb.new_zeros(rgb.shape[0]).index_copy(0, idx, p)
