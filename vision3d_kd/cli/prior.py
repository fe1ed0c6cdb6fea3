"""`v3kd prior sample "PROMPT" --out x.png`: images from a diffusion prior (the bundled one by default)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..assets import default_prior_path
from ..errors import ConfigError

__all__ = ["prior_app"]

prior_app = typer.Typer(help="Diffusion priors: sample images (the bundled prior or a local diffusers pipeline).",
                        no_args_is_help=True)


@prior_app.command("sample")
def sample_command(
    prompt: str = typer.Argument(..., help="Text prompt, e.g. 'a red mug'."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .png (n images side by side)."),
    prior: Path = typer.Option(None, "--prior", help="Diffusers pipeline directory (default: the bundled "
                               "vision3d_kd/assets/prior)."),
    elevation: float = typer.Option(15.0, "--elevation", help="Camera elevation in degrees (camera-aware priors)."),
    azimuth: float = typer.Option(0.0, "--azimuth", help="Camera azimuth in degrees; 0 = the object's front."),
    radius: float = typer.Option(3.5, "--radius", help="Camera distance in scene units (camera-aware priors)."),
    view_suffix: bool = typer.Option(True, "--view-suffix/--no-view-suffix", help=(
        "Append DreamFusion's ', front view' / ', side view' / ', back view' / ', overhead view' for the camera "
        "(unless the prompt already ends with one).")),
    n: int = typer.Option(1, "--n", help="Number of samples (different seeds)."),
    steps: int = typer.Option(50, "--steps", help="DDIM steps."),
    guidance: float = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale s (ε_∅ + s(ε_c − ε_∅))."),
    negative: str = typer.Option("", "--negative", help="Negative prompt."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the first sample."),
) -> None:
    """Sample images for PROMPT seen from the given camera and write them as one PNG."""
    import numpy as np
    import torch
    from PIL import Image

    from ..checkpoint import atomic_write
    from ..data.objects import view_suffix as suffix_for
    from ..guidance.diffusers_prior import DiffusersPrior
    from ..guidance.prior import CameraCondition
    from ..guidance.sampling import ddim_sample

    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: must be a .png file")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    if not (1 <= n <= 64 and 1 <= steps <= 1000):
        raise ConfigError("--n must be in [1, 64] and --steps in [1, 1000]")
    if not (-90 <= elevation <= 90 and radius > 0):
        raise ConfigError("--elevation must be in [-90, 90] and --radius > 0")
    model = DiffusersPrior(default_prior_path(prior))
    text = prompt.strip()
    if view_suffix and not text.endswith(" view"):
        text += suffix_for(elevation, azimuth)
    full = torch.ones(n)
    cam = CameraCondition(full * elevation, full * azimuth, full * radius) if model.camera_conditioned else None
    gen = torch.Generator().manual_seed(seed)
    img = ddim_sample(model, [text] * n, cam, steps, guidance, negative, gen)
    strip = (img.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    atomic_write(out, lambda f: Image.fromarray(np.concatenate(list(strip), axis=1)).save(f, format="PNG"))
    print(f"wrote {out} ({n} x {img.shape[-1]}px, prompt {text!r})")
