"""`v3kd bench gsv3d`: image-to-3D on held-out objects — raw generator vs decoder vs decoder + LoRA
(registered on `bench_app`)."""

from __future__ import annotations

from pathlib import Path

import typer

from .bench import _OUT_DIR, _QUICK, _at_least, _report, _split_name, bench_app

__all__ = ["gsv3d_command"]


@bench_app.command("gsv3d")
def gsv3d_command(
    quick: bool = _QUICK,
    split: str = typer.Option("validation", "--split", help="validation (defaults are chosen on it) or test (run "
                              "once defaults are chosen)."),
    seeds: int = typer.Option(None, "--seeds", help="Sampling seeds per object (default 3; with --quick 1)."),
    first_seed: int = typer.Option(0, "--first-seed", help="First sampling seed (seeds FIRST … FIRST + SEEDS - 1; "
                                   "fresh seeds check a choice made on others)."),
    views: int = typer.Option(16, "--views", help="Views on the ring (the bundled models were trained with 16)."),
    steps: int = typer.Option(30, "--steps", help="DDIM sampling steps."),
    guidance: float = typer.Option(None, "--guidance", help="Classifier-free guidance scale (default 4, chosen on "
                                   "validation)."),
    average: int = typer.Option(None, "--average", help="Rings averaged before decoding (as image-to-3d; default "
                                "its default)."),
    keep_input: bool = typer.Option(None, "--keep-input/--no-keep-input", help="The input's own latent at the "
                                    "input camera (as image-to-3d; default its default)."),
    generator: Path = typer.Option(None, "--generator", help="Generator folder (default: bundled)."),
    decoder: Path = typer.Option(None, "--decoder", help="Decoder folder (default: bundled)."),
    lora: Path = typer.Option(None, "--lora-path", help="LoRA folder (default: bundled)."),
    out_dir: Path = _OUT_DIR,
) -> None:
    """GSV3D on held-out objects: multi-view consistency (reprojection error with the true depth) of the raw
    generator, the decoder and the decoder + LoRA; Chamfer to the true surface; novel-view PSNR / SSIM; CPU
    seconds per image."""
    from ..bench.gsv3d import SPLITS, run
    from ..errors import ConfigError

    _at_least("--seeds", seeds)
    _at_least("--steps", steps)
    _at_least("--first-seed", first_seed, 0)
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    result = run(quick=quick, split=split, seeds=seeds, views=views, steps=steps, generator=generator,
                 decoder=decoder, lora=lora, average=average, keep_input=keep_input, first_seed=first_seed,
                 **({} if guidance is None else {"guidance": guidance}))
    _report(_split_name("gsv3d", split, quick), result, out_dir)
