"""One object of a composed scene seen in its own frame: the part of a field inside a box, moved and scaled.

A canonical point p (the object's frame, where it fits [−1, 1]³) is the world point c + s·p. Distances
shrink by s, so density is multiplied by s: a ray through the canonical view accumulates the same
opacity as the matching world ray. Outside the box the density is 0, so what other objects put along a
ray neither shows nor occludes — the object as its own score-distillation loss sees it (clipped rays).
With the run's occupancy grid (`occupied`, any callable of world points), density is also 0 in the cells it
marks empty: what every renderer and export of the run shows (pruned floaters gone).
Used to score each object of a layout with the single-object scorers. `splat_view` is the same for
Gaussian splats: the Gaussians whose centre lies in the box, optionally in the object's frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["PlacedField", "SplatView", "splat_view"]


class PlacedField(nn.Module):
    """`field` inside `box` [2,3] (world) in the frame of an object centred at `centre` [3] with scale `scale`,
    where `occupied` (world points [N,3] -> [N] bool, e.g. `OccupancyGrid.occupied`; None: everywhere) holds.
    Exposes what the renderer and the scorers use: aabb (canonical box), density, forward, forward_rays."""

    name = "placed"
    contract = False

    def __init__(self, field: nn.Module, centre: Tensor, scale: float, box: Tensor,
                 occupied: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.field, self.scale, self.occupied = field, float(scale), occupied
        dev = field.aabb.device
        self.register_buffer("centre", torch.as_tensor(centre, dtype=torch.float32, device=dev).reshape(3))
        self.register_buffer("box", torch.as_tensor(box, dtype=torch.float32, device=dev).reshape(2, 3))
        self.register_buffer("aabb", (self.box - self.centre) / self.scale)

    def _world(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """World points [N,3] of canonical x [N,3] and whether each lies in the box [N]."""
        w = self.centre + self.scale * x
        inside = ((w >= self.box[0]) & (w <= self.box[1])).all(dim=-1)
        return w, inside if self.occupied is None else inside & self.occupied(w)

    def density(self, x: Tensor) -> Tensor:
        w, inside = self._world(x)
        return torch.where(inside, self.field.density(w).reshape(-1) * self.scale, 0.0)

    def forward(self, x: Tensor, d: Tensor | None = None) -> tuple[Tensor, Tensor]:
        w, inside = self._world(x)
        sigma, rgb = self.field(w, d)
        return torch.where(inside, sigma.reshape(-1) * self.scale, 0.0).reshape(sigma.shape), rgb

    def forward_rays(self, x: Tensor, rays_d: Tensor, ray_indices: Tensor) -> tuple[Tensor, Tensor]:
        w, inside = self._world(x)
        sigma, rgb = self.field.forward_rays(w, rays_d, ray_indices)
        return torch.where(inside, sigma.reshape(-1) * self.scale, 0.0).reshape(sigma.shape), rgb


@dataclass
class SplatView:
    """Some Gaussians of a GaussianSplats, as the splat renderer reads them (indexing keeps the gradient to
    the parent's parameters)."""

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor
    active_sh_degree: Tensor
    aabb: Tensor
    name: str = "splats"


def splat_view(splats, box: Tensor, centre: Tensor | None = None, scale: float = 1.0) -> SplatView:
    """The Gaussians of `splats` whose centre is inside `box` [2,3] (world); with `centre`, moved into the
    frame of an object there of scale `scale` (means (μ − c)/s, scales / s)."""
    box = box.to(splats.means)
    idx = ((splats.means >= box[0]) & (splats.means <= box[1])).all(dim=-1).nonzero().flatten()
    c = torch.zeros(3).to(box) if centre is None else torch.as_tensor(centre).to(box)
    s = 1.0 if centre is None else float(scale)
    return SplatView((splats.means[idx] - c) / s, splats.quats[idx], splats.scales[idx] / s,
                     splats.opacities[idx], splats.sh[idx], splats.active_sh_degree, (box - c) / s)
