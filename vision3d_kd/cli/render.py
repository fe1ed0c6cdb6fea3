"""`v3kd render RUN --orbit N --out orbit.mp4`: turntable video (or PNG frames) of a fitted run."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import pick_device

__all__ = ["register", "render_command"]

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
    frame: str = typer.Option("normalized", "--frame", help=(
        "normalized: orbit about +Z of the frame the run was trained in; capture: about the capture's own +Z "
        "through its origin (COLMAP / transforms.json frame; --radius in its units).")),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Render an orbit of the fitted scene around the +Z axis and save it as a video."""
    from ..export.video import render_orbit

    cams = render_orbit(run, out, orbit, fps, elevation, radius, size, background, pick_device(device), frame=frame)
    print(f"wrote {out} ({orbit} frames, {cams.width}x{cams.height})")


def register(app: typer.Typer) -> None:
    app.command("render")(render_command)
