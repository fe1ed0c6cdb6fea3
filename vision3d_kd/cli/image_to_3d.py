"""`v3kd image-to-3d IMAGE --out RUN`: GSV3D — multi-view latents from one picture, decoded to Gaussian splats."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "image_to_3d_command"]


def image_to_3d_command(
    image: Path = typer.Argument(..., help="Picture of one object: any size; RGBA is composited on white by its "
                                 "alpha, RGB is taken as already on a white background."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to create (a splats run)."),
    views: int = typer.Option(16, "--views", help="Views generated on the input view's elevation ring (4-32; the "
                              "bundled models were trained with 16)."),
    elevation: float = typer.Option(20.0, "--elevation", help="Elevation of the input camera in degrees (-10 to 60)."),
    steps: int = typer.Option(30, "--steps", help="DDIM sampling steps."),
    guidance: float = typer.Option(None, "--guidance", help="Classifier-free guidance scale (1 = none; default 4, "
                                   "chosen on the benchmark's validation objects)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    average: int = typer.Option(None, "--average", help="Rings sampled and averaged before decoding (1-8; each "
                                "costs one more sampling; default chosen on the benchmark's validation objects)."),
    keep_input: bool = typer.Option(None, "--keep-input/--no-keep-input", help="Decode the input picture's own "
                                    "latent at the input camera instead of the generated frame (default chosen on "
                                    "the benchmark's validation objects)."),
    lora: bool = typer.Option(True, "--lora/--no-lora", help="Use the geometric-distillation LoRA."),
    recentre: float = typer.Option(None, "--recentre", help="Crop to the object and pad so it fills this share "
                                   "of the picture's side (e.g. 0.55; default: keep the framing)."),
    generator: Path = typer.Option(None, "--generator", help="Multi-view generator folder (default: bundled)."),
    decoder: Path = typer.Option(None, "--decoder", help="Gaussian decoder folder (default: bundled)."),
    lora_path: Path = typer.Option(None, "--lora-path", help="LoRA folder (default: bundled)."),
    mesh: bool = typer.Option(True, "--mesh/--no-mesh", help="Write RUN/mesh.glb."),
    video: bool = typer.Option(True, "--video/--no-video", help="Write RUN/turntable.mp4."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Image to 3D (GSV3D): the generator's views on the input view's elevation ring, the decoder's Gaussians,
    written as a splats run (`export`, `render`, `view` read it) with splats.ply, mesh.glb, turntable.mp4 and
    views.png. Frame: z up, the input camera at azimuth 0."""
    from ..distill.gsv3d.image_to_3d import GSV3D, ImageTo3DConfig, image_to_3d
    from .common import stage_bars

    given = {"guidance": guidance, "average": average, "keep_input": keep_input}
    cfg = ImageTo3DConfig(views=views, elevation=elevation, steps=steps, seed=seed, lora=lora, recentre=recentre,
                          **{k: v for k, v in given.items() if v is not None})
    cfg.check()
    models = None
    if generator is not None or decoder is not None or lora_path is not None:
        models = GSV3D.load(generator, decoder, lora, lora_path)
    with stage_bars(progress) as bar:
        m = image_to_3d(image, out, cfg, models, mesh=mesh, video=video, progress=bar)
    print(f"wrote {out} ({m['gaussians']} Gaussians) in {m['seconds']:.1f} s ({m['cpu_seconds'] / 60:.2f} CPU-min)")


def register(app: typer.Typer) -> None:
    app.command("image-to-3d")(image_to_3d_command)
