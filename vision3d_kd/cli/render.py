"""`v3kd render RUN --orbit N --out orbit.mp4`: turntable video (or PNG frames) of a fitted run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import typer
from rich.progress import track

from ..errors import ConfigError
from .common import pick_device

__all__ = ["register", "render_command", "write_video", "orbit_frames"]

VIDEO_SUFFIXES = (".mp4", ".gif")


def write_video(frames: list[np.ndarray], out: Path, fps: int) -> None:
    """Write uint8 frames [H,W,3] to .mp4/.gif atomically, or to a folder of PNGs when `out` has no suffix."""
    import imageio.v2 as imageio

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == "":
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        for i, f in enumerate(frames):
            imageio.imwrite(tmp / f"frame_{i:04d}.png", f)
        os.replace(tmp, out)
        return
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    if out.suffix == ".mp4":
        writer = imageio.get_writer(tmp_name, fps=fps, codec="libx264", quality=8, macro_block_size=1)
    else:
        writer = imageio.get_writer(tmp_name, mode="I", duration=1000 / fps, loop=0)
    with writer:
        for f in frames:
            writer.append_data(f)
    os.replace(tmp_name, out)


def orbit_frames(field, grid, settings, cams, background: str = "white", progress: bool = True) -> list[np.ndarray]:
    """uint8 frames [H,W,3] of every camera of `cams` (a field with its grid, or splats)."""
    from ..evaluate import render_image

    steps = track(range(len(cams)), description="render orbit") if progress else range(len(cams))
    return [(render_image(field, cams, i, grid, settings, background)["rgb"].cpu().numpy() * 255 + 0.5)
            .astype(np.uint8) for i in steps]


def render_command(
    run: Path = typer.Argument(..., help="Run directory written by `v3kd fit`."),
    orbit: int = typer.Option(60, "--orbit", help="Number of frames on a full turn around the scene (> 0)."),
    out: Path = typer.Option(Path("orbit.mp4"), "--out", "-o", help="Output .mp4, .gif, or a folder for PNG frames."),
    elevation: float = typer.Option(
        None, "--elevation", help="Camera elevation in degrees (default: mean of training views)."
    ),
    radius: float = typer.Option(
        None, "--radius", help="Camera distance from the centre in scene units (default: training mean)."
    ),
    size: int = typer.Option(None, "--size", help="Square frame size in pixels (default: training image size)."),
    fps: int = typer.Option(30, "--fps", help="Frames per second of the video."),
    background: str = typer.Option("white", "--background", help="white or black."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Render an orbit of the fitted scene around the +Z axis and save it as a video."""
    from ..cameras import orbit_cameras
    from ..trainer import load_run, render_settings_from

    if orbit <= 0 or fps <= 0 or (size is not None and size <= 0):
        raise ConfigError("--orbit, --fps and --size must be positive")
    if out.suffix not in ("", *VIDEO_SUFFIXES):
        raise ConfigError(f"{out}: unsupported output; use .mp4, .gif or a folder name")
    if background not in ("white", "black"):
        raise ConfigError(f"--background must be white or black, got {background!r}")
    dev = pick_device(device)
    field, grid, cfg = load_run(run, dev)
    r = cfg.get("render", {})
    w = size or int(r.get("width", 200))
    h = size or int(r.get("height", 200))
    cams = orbit_cameras(
        orbit,
        radius or float(r.get("radius", 4.0)),
        elevation if elevation is not None else float(r.get("elevation_deg", 30.0)),
        float(r.get("fov_y_deg", 40.0)),
        w,
        h,
    ).to(dev)
    frames = orbit_frames(field, grid, render_settings_from(cfg), cams, background)
    write_video(frames, out, fps)
    print(f"wrote {out} ({orbit} frames, {w}x{h})")


def register(app: typer.Typer) -> None:
    app.command("render")(render_command)
