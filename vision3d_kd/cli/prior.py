"""`v3kd prior sample "PROMPT" --out x.png`: images from a diffusion prior (the bundled one by default)."""

from __future__ import annotations

from pathlib import Path

import typer

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
    dtype: str = typer.Option("fp32", "--dtype", help="The prior's compute precision: fp32, fp16 or bf16."),
) -> None:
    """Sample images for PROMPT seen from the given camera and write them as one PNG."""
    from ..guidance.sampling import write_samples

    text, images = write_samples(prior, prompt, out, elevation, azimuth, radius, n, steps, guidance, negative, seed,
                                 view_suffix, dtype)
    print(f"wrote {out} ({n} x {images.shape[-1]}px, prompt {text!r})")


@prior_app.command("vocab")
def vocab_command() -> None:
    """List the objects, colours and phrasings the bundled prior understands (and what it does not)."""
    from ..guidance.prompt_words import vocabulary_lines

    print("\n".join(vocabulary_lines()))
