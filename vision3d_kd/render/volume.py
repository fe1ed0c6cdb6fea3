"""Volume rendering of radiance fields: samples along rays (`sampling.py`), the field at them, compositing.

Rays are in world units with unit-length directions, so `t` and depth are Euclidean distances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.dataset import background_color
from ..kernels import composite, composite_weights
from .distortion import distortion_loss
from .occupancy import OccupancyGrid
from .sampling import sample_along_rays, visible_samples

__all__ = ["RenderConfig", "render_rays", "render_rays_chunked", "ray_background"]


@dataclass
class RenderConfig:
    """How rays are sampled. step_size in world units; opacity_min/early_stop_eps prune samples whose
    opacity is negligible or that lie behind an opaque surface (their weight < eps), using a
    gradient-free density pass first (nerfacc's `sigma_fn` trick). With a shader, samples whose weight in
    that pass is below `shade_weight_min` are shaded with a camera-facing normal (`Shader`), not −∇σ."""

    step_size: float = 0.01
    near: float = 0.0
    opacity_min: float = 1e-4
    early_stop_eps: float = 1e-4
    prune: bool = True
    shade_weight_min: float = 0.0


def ray_background(
    kind: str | Tensor, n: int, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """Per-ray background [n,3]: 'random' (uniform per ray), or any colour `data.background_color` accepts."""
    if isinstance(kind, str) and kind == "random":
        return torch.rand(n, 3, generator=generator, device=device)
    return background_color(kind).to(device).expand(n, 3)


def render_rays(
    field,
    rays_o: Tensor,
    rays_d: Tensor,
    grid: OccupancyGrid | None,
    background: Tensor,
    settings: RenderConfig,
    jitter: bool | Tensor = False,
    generator: torch.Generator | None = None,
    distortion: bool = False,
    shader: Callable[..., tuple[Tensor, dict[str, Tensor]]] | None = None,
    clip: Tensor | None = None,
) -> dict[str, Tensor]:
    """Render rays [R,3] through `field` (sigma, rgb = field(x, d)). background: [R,3].

    Returns rgb [R,3] (composited over the background), opacity [R], depth [R] (ray distance,
    weighted by opacity; 0 where empty) and n_samples (a 0-dim tensor); with `distortion`, also
    "distortion": the mean Mip-NeRF 360 distortion loss of the rays' samples (scene units).
    `shader(x [S,3], sigma [S], rgb [S,3], rays_d, ray_indices, shaded [S] bool or None) -> (rgb', {name:
    penalty [S]})` (`shaded`: the samples whose weight reaches settings.shade_weight_min) replaces
    the samples' colours before compositing (render/shading.py); each penalty is returned as
    Σ sg(w_i) p_i / R under its name (sg: no gradient through the weights). `clip` [2,3]: sample only inside
    this box (`sample_along_rays`), so matter outside it neither shows nor occludes."""
    samples = sample_along_rays(rays_o, rays_d, field.aabb, settings.step_size, grid, settings.near, jitter,
                                generator, contract=getattr(field, "contract", False), clip=clip)
    n = rays_o.shape[0]
    shaded = None  # which samples get normals from the density (None: all)
    if settings.prune and len(samples) > 0:
        with torch.no_grad():  # a gradient-free density pass picks the samples worth a gradient pass
            sigma = field.density(samples.points).reshape(-1)
            keep = visible_samples(samples, sigma, n, settings.opacity_min, settings.early_stop_eps)
            if shader is not None and settings.shade_weight_min > 0:
                w = composite_weights(sigma, samples.t_starts, samples.t_ends, samples.ray_indices, n)
                shaded = w[keep] >= settings.shade_weight_min
        samples = samples.select(keep)
    ray_i, t_s, t_e, pts = samples.ray_indices, samples.t_starts, samples.t_ends, samples.points
    if ray_i.numel() == 0:
        zeros = torch.zeros(n, device=rays_o.device)
        rgb = background + 0.0 * sum(p.sum() for p in field.parameters())  # keep the graph alive
        out = {"rgb": rgb, "opacity": zeros, "depth": zeros, "n_samples": torch.tensor(0)}
        return {**out, "distortion": rgb.sum() * 0.0} if distortion else out
    sigma, rgb_s = field.forward_rays(pts, rays_d, ray_i)
    penalties: dict[str, Tensor] = {}
    if shader is not None:
        rgb_s, penalties = shader(pts, sigma.reshape(-1), rgb_s, rays_d, ray_i, shaded)
    rgb, opacity, depth = composite(sigma.reshape(-1), rgb_s, t_s, t_e, ray_i, n)
    rgb = rgb + (1.0 - opacity[:, None]) * background
    out = {"rgb": rgb, "opacity": opacity, "depth": depth, "n_samples": torch.tensor(ray_i.numel())}
    if distortion:
        out["distortion"] = distortion_loss(sigma.reshape(-1), t_s, t_e, ray_i, n)
    if penalties:
        w = composite_weights(sigma.reshape(-1).detach(), t_s, t_e, ray_i, n)
        out.update({k: (w * p).sum() / n for k, p in penalties.items()})
    return out


@torch.no_grad()
def render_rays_chunked(
    field,
    rays_o: Tensor,
    rays_d: Tensor,
    grid: OccupancyGrid | None,
    background: Tensor,
    settings: RenderConfig,
    chunk: int = 8192,
    clip: Tensor | None = None,
) -> dict[str, Tensor]:
    """Render many rays [R,3] without gradients, `chunk` rays at a time; same outputs as render_rays."""
    outs: dict[str, list[Tensor]] = {"rgb": [], "opacity": [], "depth": []}
    for s in range(0, rays_o.shape[0], chunk):
        o = render_rays(field, rays_o[s : s + chunk], rays_d[s : s + chunk], grid, background[s : s + chunk], settings,
                        clip=clip)
        for k in outs:
            outs[k].append(o[k])
    return {k: torch.cat(v) for k, v in outs.items()}
