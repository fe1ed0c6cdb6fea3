"""Image sampling from any `DiffusionPrior` with deterministic DDIM (η = 0) and classifier-free guidance:
x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, x_{t'} = √ᾱ_{t'} x̂_0 + √(1−ᾱ_{t'}) ε̂ over `steps` evenly spaced
timesteps from T−1 down to 0 (ᾱ = 1 after the last)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .prior import CameraCondition, DiffusionPrior

__all__ = ["ddim_sample"]


@torch.no_grad()
def ddim_sample(prior: DiffusionPrior, prompts: list[str], camera: CameraCondition | None = None, steps: int = 50,
                guidance_scale: float = 7.5, negative: str = "", generator: torch.Generator | None = None,
                progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Images [B,3,H,W] in [0,1] for the prompts (and cameras, for camera-conditioned priors)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    emb = prior.text_embeddings(prompts, negative)
    abar = prior.alphas_cumprod.float()
    b = len(prompts)
    x = torch.randn(b, prior.channels, prior.sample_size, prior.sample_size, generator=generator)
    ts = torch.linspace(len(abar) - 1, 0, steps).round().long()
    x0 = x
    for i, t in enumerate(ts.tolist()):
        a = abar[t]
        eps = prior.predict_noise(x, torch.full((b,), t, dtype=torch.long), emb, camera, guidance_scale).float().cpu()
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        if progress is not None:
            progress(i + 1, steps)
    return prior.decode(x0).float().cpu()
