"""Adaptive density control of Gaussian splats (3D Gaussian Splatting, Sec. 5): clone small Gaussians
and split large ones whose mean screen-space gradient is high, prune transparent or huge ones, and
periodically reset opacities. Keeps the Adam state of surviving Gaussians; new ones start at zero
moments. Screen-space gradients are measured in NDC units (pixel gradient times half the image size).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..fields.splats import PARAM_NAMES, GaussianSplats
from ..render.splat_project import quat_to_rotmat

__all__ = ["DensityController", "edit_gaussians"]


def _per_gaussian(v: object, n: int) -> bool:
    return torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == n


def edit_gaussians(splats: GaussianSplats, opt: torch.optim.Optimizer, fn: Callable[[Tensor, bool], Tensor]) -> None:
    """Replace every per-Gaussian parameter p by fn(p, False) and its Adam moments m by fn(m, True)
    (fn keeps/reorders rows and appends new ones; for moments it should append zeros)."""
    for name in PARAM_NAMES:
        old = getattr(splats, name)
        new = nn.Parameter(fn(old.detach(), False).contiguous())
        for group in opt.param_groups:
            for i, p in enumerate(group["params"]):
                if p is old:
                    group["params"][i] = new
        state = opt.state.pop(old, None)
        if state is not None:
            opt.state[new] = {
                k: (fn(v, True).contiguous() if _per_gaussian(v, old.shape[0]) else v) for k, v in state.items()
            }
        setattr(splats, name, new)


class DensityController:
    """Accumulates per-Gaussian screen-space gradient norms after each backward and edits the set of
    Gaussians every `refine_every` steps inside the refinement window (cfg: SplatTrainConfig)."""

    def __init__(self, cfg, extent: float, unbounded: bool = False) -> None:
        self.cfg = cfg
        self.extent = float(extent)
        self.unbounded = unbounded  # far Gaussians (background) may be as large as their distance allows
        self.grad_sum = torch.zeros(0)
        self.count = torch.zeros(0)

    def _ensure(self, n: int) -> None:
        if self.grad_sum.shape[0] != n:
            self.grad_sum = torch.zeros(n)
            self.count = torch.zeros(n)

    @torch.no_grad()
    def accumulate(self, means2d: Tensor, visible: Tensor, width: int, height: int) -> None:
        """Add |d loss / d means2d| (NDC units) of Gaussians visible in this view; call after backward."""
        if means2d.grad is None:
            return
        self._ensure(means2d.shape[0])
        g = means2d.grad.detach().cpu().clone()
        g[:, 0] *= width / 2
        g[:, 1] *= height / 2
        vis = visible.detach().cpu()
        self.grad_sum[vis] += g[vis].norm(dim=-1)
        self.count[vis] += 1

    @torch.no_grad()
    def step(self, step: int, splats: GaussianSplats, opt: torch.optim.Optimizer,
             generator: torch.Generator | None = None,
             reduce: Callable[[list[Tensor]], None] | None = None) -> dict[str, int] | None:
        """Apply densification / pruning / opacity reset due at `step` (counted after the step ran).
        Returns counts of what changed, or None when nothing was due. `reduce` (data-parallel: a sum over the
        ranks, in place) first pools every rank's statistics, so all ranks make the same edit."""
        c = self.cfg
        report: dict[str, int] | None = None
        if c.refine_start <= step < c.refine_stop and step % c.refine_every == 0 and step > 0:
            if reduce is not None:
                self._ensure(splats.n)
                reduce([self.grad_sum, self.count])
            report = self._refine(step, splats, opt, generator)
        if c.reset_every and step % c.reset_every == 0 and 0 < step < c.refine_stop:
            cap = math.log(2 * c.prune_opacity / (1 - 2 * c.prune_opacity))
            splats.opacity_logits.data.clamp_(max=cap)
            for v in opt.state.get(splats.opacity_logits, {}).values():
                if torch.is_tensor(v) and v.dim() > 0:
                    v.zero_()
            report = {**(report or {}), "reset": 1}
        return report

    def _refine(self, step: int, splats: GaussianSplats, opt: torch.optim.Optimizer,
                generator: torch.Generator | None) -> dict[str, int]:
        c = self.cfg
        n = splats.n
        self._ensure(n)
        avg = self.grad_sum / self.count.clamp_min(1)
        high = avg > c.grow_grad2d
        max_scale = splats.scales.detach().max(dim=-1).values.cpu()
        small = max_scale <= c.grow_scale3d * self.extent
        room = max(0, c.max_gaussians - n)
        clone = high & small
        split = high & ~small
        # Respect the cap: keep the highest-gradient candidates.
        n_new = int(clone.sum()) + int(split.sum())
        if n_new > room:
            cand = torch.nonzero(clone | split).flatten()
            keep = cand[avg[cand].argsort(descending=True)[:room]]
            mask = torch.zeros(n, dtype=torch.bool)
            mask[keep] = True
            clone, split = clone & mask, split & mask
        dev = splats.means.device
        ci, si = torch.nonzero(clone).flatten().to(dev), torch.nonzero(split).flatten().to(dev)
        # Split: two samples from the Gaussian replace it, scales divided by 1.6 (3DGS).
        scales = splats.scales.detach()[si]
        R = quat_to_rotmat(splats.quats.detach()[si])
        z = torch.randn(si.numel(), 2, 3, generator=generator).to(dev) * scales[:, None, :]
        offsets = torch.einsum("nij,nkj->nki", R, z)
        new_means = (splats.means.detach()[si, None, :] + offsets).reshape(-1, 3)
        src = torch.cat([ci, si, si])
        n_added = src.numel()
        prune = torch.zeros(n + n_added, dtype=torch.bool)
        prune[si.cpu()] = True  # split originals are replaced by their two samples

        def fn(t: Tensor, is_state: bool) -> Tensor:
            if is_state:
                extra = t.new_zeros((n_added, *t.shape[1:]))
            else:
                extra = t[src].clone()
            return torch.cat([t, extra])

        edit_gaussians(splats, opt, fn)
        if si.numel():
            lo = n + ci.numel()
            splats.means.data[lo:] = torch.cat([new_means[0::2], new_means[1::2]])
            splats.log_scales.data[lo:] -= math.log(1.6)
        # Prune: transparent, or (after the first opacity reset) larger than prune_scale3d * extent; in an
        # unbounded scene the limit grows with the distance beyond the extent (same size on screen).
        prune |= (splats.opacities.detach() < c.prune_opacity).cpu()
        if c.reset_every and step > c.reset_every:
            limit = torch.full((splats.n,), c.prune_scale3d * self.extent, device=dev)
            if self.unbounded:
                limit = limit * (splats.means.detach().norm(dim=-1) / self.extent).clamp_min(1.0)
            prune |= (splats.scales.detach().max(dim=-1).values > limit).cpu()
        keep_idx = torch.nonzero(~prune).flatten().to(dev)
        edit_gaussians(splats, opt, lambda t, _s: t[keep_idx])
        self._ensure(splats.n)
        self.grad_sum.zero_()
        self.count.zero_()
        return {"cloned": int(ci.numel()), "split": int(si.numel()), "pruned": int(prune.sum()), "n": splats.n}

    def state_dict(self) -> dict[str, Tensor]:
        return {"grad_sum": self.grad_sum.clone(), "count": self.count.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.grad_sum = state["grad_sum"].clone()
        self.count = state["count"].clone()
