"""Image sampling from any `DiffusionPrior` with deterministic DDIM (η = 0) and classifier-free guidance:
x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t, x_{t'} = √ᾱ_{t'} x̂_0 + √(1−ᾱ_{t'}) ε̂ over `steps` evenly spaced
timesteps from T−1 down to 0 (ᾱ = 1 after the last). `write_samples` writes such images side by side as
one PNG (what `v3kd prior sample` does)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import atomic_write
from ..errors import ConfigError
from .diffusers_prior import load_prior
from .pipeline_files import parse_dtype
from .prior import CameraCondition, DiffusionPrior
from .prompts import view_prompt

__all__ = ["ddim_sample", "ddim_timesteps", "write_samples", "write_image_strip"]


def ddim_timesteps(train_steps: int, steps: int) -> Tensor:
    """The `steps` evenly spaced integer timesteps [steps] a DDIM chain visits, from train_steps − 1 down to 0."""
    return torch.linspace(train_steps - 1, 0, steps).round().long()


@torch.no_grad()
def ddim_sample(prior: DiffusionPrior, prompts: list[str], camera: CameraCondition | None = None, steps: int = 50,
                guidance_scale: float = 7.5, negative: str = "", generator: torch.Generator | None = None,
                progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Images [B,3,H,W] in [0,1] for the prompts (and cameras, for camera-conditioned priors)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    emb = prior.text_embeddings(prompts, negative or None)  # "": no negative prompt, the model's default
    abar = prior.alphas_cumprod.float()
    b = len(prompts)
    x = torch.randn(b, prior.channels, prior.sample_size, prior.sample_size, generator=generator)
    ts = ddim_timesteps(len(abar), steps)
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


def write_image_strip(images: Tensor, out: Path) -> None:
    """Write images [N,3,H,W] in [0,1] side by side as one 8-bit PNG [H, N*W] (atomic)."""
    from PIL import Image

    strip = (images.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    atomic_write(out, lambda f: Image.fromarray(np.concatenate(list(strip), axis=1)).save(f, format="PNG"))


def write_samples(prior: DiffusionPrior | str | Path | None, prompt: str, out: Path, elevation_deg: float = 15.0,
                  azimuth_deg: float = 0.0, radius: float = 3.5, n: int = 1, steps: int = 50,
                  guidance_scale: float = 7.5, negative: str = "", seed: int = 0,
                  view_suffix: bool = True, dtype: str = "fp32") -> tuple[str, Tensor]:
    """Sample `n` images of `prompt` seen from a camera at elevation/azimuth (degrees) and distance `radius`
    (scene units; used by camera-aware priors), seeds from `seed` on, and write them side by side to PNG `out`.

    `prior` is a loaded prior, a local diffusers pipeline directory, or None for the bundled prior; with
    `view_suffix` the camera's view suffix is appended to the prompt; `dtype` (fp32, fp16, bf16): the precision a
    prior loaded here computes in. Returns (the prompt used, the images
    [n,3,H,W] in [0,1])."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: must be a .png file")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    if not (1 <= n <= 64 and 1 <= steps <= 1000):
        raise ConfigError("--n must be in [1, 64] and --steps in [1, 1000]")
    if not (-90 <= elevation_deg <= 90 and radius > 0):
        raise ConfigError("--elevation must be in [-90, 90] and --radius > 0")
    precision = parse_dtype(dtype)
    model = prior if isinstance(prior, DiffusionPrior) else load_prior(prior, dtype=precision)
    text = view_prompt(prompt, elevation_deg, azimuth_deg) if view_suffix else prompt.strip()
    full = torch.ones(n)
    cam = CameraCondition(full * elevation_deg, full * azimuth_deg, full * radius) if model.camera_conditioned else None
    images = ddim_sample(model, [text] * n, cam, steps, guidance_scale, negative, torch.Generator().manual_seed(seed))
    write_image_strip(images, out)
    return text, images
