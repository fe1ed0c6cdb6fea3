"""Turntable videos of any run: frames of an orbit around +Z, written as .mp4/.gif or a folder of PNGs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import track

from ..cameras import Cameras, orbit_cameras
from ..data.normalize import similarity_scale, transform_c2w
from ..errors import ConfigError
from ..render.image import render
from ..runs import capture_transform, load_run, render_settings_from
from .frame import check_frame

__all__ = ["VIDEO_SUFFIXES", "write_video", "orbit_frames", "orbit_of_run", "render_orbit"]

VIDEO_SUFFIXES = (".mp4", ".gif")
OTHER_MEDIA = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".avi", ".mov", ".mkv", ".webm", ".apng")


def _is_folder(out: Path) -> bool:
    """Whether `out` names a folder of PNG frames: anything but .mp4 / .gif (so "run-1.5" or "a+b=true" is a
    folder); image and other video suffixes are refused by `_check_video_path`."""
    return out.suffix.lower() not in VIDEO_SUFFIXES


def _check_video_path(out: Path) -> None:
    """ConfigError when `out` has an image or video suffix other than .mp4 / .gif."""
    if out.suffix.lower() in OTHER_MEDIA:
        raise ConfigError(f"{out}: unsupported output; use .mp4, .gif or a folder name")


def write_video(frames: list[np.ndarray], out: Path, fps: int) -> None:
    """Write uint8 frames [H,W,3] to .mp4/.gif, or to a folder of PNGs otherwise (`_is_folder`).

    The encoder needs a file name, so this writes a temporary file (or folder) beside `out` and renames
    it into place; nothing is left behind on failure."""
    import imageio.v2 as imageio

    out = Path(out)
    _check_video_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if _is_folder(out):
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            for i, f in enumerate(frames):
                imageio.imwrite(tmp_dir / f"frame_{i:04d}.png", f)
            os.replace(tmp_dir, out)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        if out.suffix.lower() == ".mp4":
            writer = imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1)
        else:
            writer = imageio.get_writer(tmp, mode="I", duration=1000 / fps, loop=0)
        with writer:
            for f in frames:
                writer.append_data(f)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def orbit_frames(model, grid, settings, cams: Cameras, background: str = "white",
                 progress: bool = True) -> list[np.ndarray]:
    """uint8 frames [H,W,3] of every camera of `cams` (a field with its occupancy grid, or splats)."""
    steps = track(range(len(cams)), description="render orbit") if progress else range(len(cams))
    return [(render(model, cams, i, grid, settings, background)["rgb"].cpu().numpy() * 255 + 0.5)
            .astype(np.uint8) for i in steps]


def orbit_of_run(cfg: dict[str, Any], frames: int, elevation_deg: float | None = None, radius: float | None = None,
                 size: int | None = None) -> Cameras:
    """Cameras on a full turn around +Z, defaulting to the run's `render` section (the training views' mean
    elevation, distance, field of view and image size)."""
    r = cfg.get("render", {})
    w = size or int(r.get("width", 200))
    h = size or int(r.get("height", 200))
    return orbit_cameras(frames, radius or float(r.get("radius", 4.0)),
                         elevation_deg if elevation_deg is not None else float(r.get("elevation_deg", 30.0)),
                         float(r.get("fov_y_deg", 40.0)), w, h)


def render_orbit(run: Path, out: Path, frames: int = 60, fps: int = 30, elevation_deg: float | None = None,
                 radius: float | None = None, size: int | None = None, background: str = "white",
                 device: torch.device | str = "cpu", progress: bool = True, frame: str = "normalized") -> Cameras:
    """Render a turntable of RUN to `out` (.mp4, .gif or a PNG folder); returns the cameras used (model frame).
    `frame="capture"`: the turn is about the capture's own +Z axis through its origin, `radius` in its
    units (default: the training distance converted), for runs on normalised captures."""
    check_frame(frame)
    if frames <= 0 or fps <= 0 or (size is not None and size <= 0):
        raise ConfigError("--orbit, --fps and --size must be positive")
    _check_video_path(Path(out))  # before loading and rendering anything
    if background not in ("white", "black"):
        raise ConfigError(f"--background must be white or black, got {background!r}")
    model, grid, cfg = load_run(run, device)
    if frame == "capture":
        t = capture_transform(cfg).numpy()
        scale = similarity_scale(t)
        r = radius if radius is not None else float(cfg.get("render", {}).get("radius", 4.0)) / scale
        cams = orbit_of_run(cfg, frames, elevation_deg, r, size)
        cams.c2w = torch.tensor(transform_c2w(t, cams.c2w.double().numpy()), dtype=torch.float32)
        cams = cams.to(device)
    else:
        cams = orbit_of_run(cfg, frames, elevation_deg, radius, size).to(device)
    write_video(orbit_frames(model, grid, render_settings_from(cfg), cams, background, progress), Path(out), fps)
    return cams
