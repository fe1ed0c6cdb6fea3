"""Images for structure from motion: copied from a folder of photos or sampled from a video, upright and
no larger than a size limit, so COLMAP sees exactly the pixels the loaders later read.

Photos: ``.jpg / .jpeg / .png`` directly in the folder (sorted by name); EXIF orientation is applied and
the tag dropped, files needing no change are copied byte for byte. Video: ``frames`` frames sampled evenly;
in each sampling window the sharpest candidate (variance of the Laplacian) of its middle half is kept,
which skips motion-blurred frames without bunching the samples.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .frames import data_error

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Progress", "copy_photos", "sample_video", "sharpness",
           "upscaled_copies", "UPSCALED_SUFFIX"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
_ORIENTATION = 0x0112
UPSCALED_SUFFIX = ".up.png"  # name of an upscaled copy: the original name + this (lossless, whatever the original)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _fit(img: Image.Image, max_size: int) -> Image.Image:
    """``img`` downscaled (Lanczos, aspect kept) so its long side is at most ``max_size`` pixels."""
    long_side = max(img.size)
    if max_size <= 0 or long_side <= max_size:
        return img
    scale = max_size / long_side
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _copy_photo(src: Path, dst: Path, max_size: int) -> None:
    """Copy one photo upright (EXIF applied) and within ``max_size``; byte copy when nothing changes."""
    with Image.open(src) as img:
        orientation = img.getexif().get(_ORIENTATION, 1)
        if orientation in (0, 1) and max(img.size) <= max_size and img.mode == "RGB":
            shutil.copyfile(src, dst)
            return
        out = _fit(ImageOps.exif_transpose(img).convert("RGB"), max_size)
        if dst.suffix.lower() in (".jpg", ".jpeg"):
            out.save(dst, format="JPEG", quality=95)
        else:
            out.save(dst, format="PNG")


def copy_photos(folder: Path, dst: Path, max_size: int,
                progress: Progress | None = None) -> tuple[list[str], list[str]]:
    """Copy the photos of ``folder`` into ``dst``; (copied names, warning lines for skipped files)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    photos = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    warnings = []
    if len(photos) < len(files):
        warnings.append(f"skipped {len(files) - len(photos)} files that are not {'/'.join(IMAGE_SUFFIXES)}")
    if not photos:
        raise data_error(folder, f"no images ({'/'.join(IMAGE_SUFFIXES)}) in this folder")
    names, unreadable = [], []
    for k, src in enumerate(photos):
        try:
            _copy_photo(src, dst / src.name, max_size)
            names.append(src.name)
        except (OSError, UnidentifiedImageError, ValueError):
            unreadable.append(src.name)
        if progress:
            progress("copying images", k + 1, len(photos))
    if unreadable:
        warnings.append(f"skipped {len(unreadable)} unreadable images: {', '.join(unreadable[:5])}"
                        + (" ..." if len(unreadable) > 5 else ""))
    if not names:
        raise data_error(folder, "no readable images in this folder")
    return names, warnings


def upscaled_copies(images: Path, names: list[str], min_size: int, dst: Path) -> int:
    """The integer factor that brings the longest image side of ``names`` to at least ``min_size`` pixels; when
    above 1, bicubic copies that much larger are written to ``dst`` as NAME + UPSCALED_SUFFIX (a pixel centre
    at x maps to x * factor in COLMAP's corner-origin pixel frame, so intrinsics divide back exactly)."""
    longest = 0
    for name in names:
        with Image.open(images / name) as img:
            longest = max(longest, *img.size)
    factor = max(1, math.ceil(min_size / max(longest, 1)))
    if factor > 1:
        dst.mkdir(parents=True, exist_ok=True)
        for name in names:
            with Image.open(images / name) as img:
                big = img.convert("RGB").resize((img.width * factor, img.height * factor), Image.Resampling.BICUBIC)
            big.save(dst / (name + UPSCALED_SUFFIX), format="PNG")
    return factor


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (higher is sharper), on at most ~640 pixels wide."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    step = max(1, grey.shape[1] // 640)
    return float(cv2.Laplacian(grey[::step, ::step], cv2.CV_64F).var())


def _candidates(total: int, n: int) -> np.ndarray:
    """[total] sampling window of each frame index (-1 outside the middle half of its window)."""
    owner = np.full(total, -1, np.int64)
    edges = np.linspace(0, total, n + 1)
    for k in range(n):
        a, b = edges[k], edges[k + 1]
        lo = int(math.floor(a + (b - a) / 4))
        hi = max(lo + 1, int(math.ceil(b - (b - a) / 4)))
        owner[lo:min(hi, total)] = k
    return owner


def _open_video(path: Path) -> tuple[int, Generator[bytes, None, None], tuple[int, int]]:
    """(frame count, frame generator, (width, height)) or a DataError naming the file."""
    import imageio_ffmpeg

    try:
        total, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise data_error(path, f"cannot read this video ({first[:160]})") from None
    if total < 1:
        reader.close()
        raise data_error(path, "the video has no frames")
    return int(total), reader, tuple(meta["size"])


def sample_video(path: Path, dst: Path, frames: int, max_size: int,
                 progress: Progress | None = None) -> tuple[list[str], list[str]]:
    """Write about ``frames`` sharp, evenly spread frames of video ``path`` into ``dst`` as
    ``frame_00001.png ...``; (names, warning lines)."""
    total, reader, (width, height) = _open_video(path)
    n = max(1, min(frames, total))
    owner = _candidates(total, n)
    names: list[str] = []
    best: tuple[float, np.ndarray | None, int] = (-1.0, None, -1)

    def flush() -> None:
        rgb = best[1]
        if rgb is not None:
            name = f"frame_{len(names) + 1:05d}.png"
            _fit(Image.fromarray(rgb), max_size).save(dst / name, format="PNG")
            names.append(name)

    try:
        for i, buf in enumerate(reader):
            if i >= total:
                break
            window = int(owner[i])
            if window < 0:
                continue
            if window != best[2]:
                flush()
                best = (-1.0, None, window)
            rgb = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
            score = sharpness(rgb)
            if score > best[0]:
                best = (score, rgb.copy(), window)
            if progress:
                progress("reading video", i + 1, total)
        flush()
    except (RuntimeError, OSError, ValueError) as e:
        raise data_error(path, f"cannot decode this video ({str(e).strip()[:160]})") from None
    finally:
        reader.close()
    if not names:
        raise data_error(path, "no frames could be decoded from this video")
    warnings = [f"the video has {total} frames; sampled {len(names)}"] if len(names) < frames else []
    return names, warnings
