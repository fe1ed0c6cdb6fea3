"""Optimisers and learning-rate schedules shared by the trainers."""

from __future__ import annotations

import torch

__all__ = ["make_optimizer", "set_lr", "adapt_batch_rays"]


def make_optimizer(field, lr: float, extra_groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """Adam (betas 0.9/0.99, eps 1e-15) over the field's parameter groups and `extra_groups` (e.g. camera
    corrections: {"params", "lr"}); each group keeps `base_lr`, so one schedule scales them all."""
    groups = field.param_groups(lr) + [dict(g) for g in extra_groups or []]
    for g in groups:
        g["base_lr"] = g["lr"]
    # The fused Adam is several times faster on CPU for the multi-million-parameter grids.
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for g in groups for p in g["params"])
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15, fused=fused)


def set_lr(opt: torch.optim.Optimizer, progress: float, step: int, cfg) -> float:
    """Linear warm-up then exponential decay to lr_final at progress 1; returns the peak group's lr."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    factor = warm * cfg.lr_final ** min(1.0, progress)
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor
    return factor * cfg.lr


def adapt_batch_rays(batch_rays: int, n_samples: int, cfg) -> int:
    """Rays for the next step so that a step holds about cfg.target_samples samples (0: unchanged)."""
    if not cfg.target_samples or n_samples <= 0:
        return batch_rays
    ratio = cfg.target_samples / n_samples
    return int(min(cfg.max_batch_rays, max(256, batch_rays * min(1.5, max(0.67, ratio)))))
