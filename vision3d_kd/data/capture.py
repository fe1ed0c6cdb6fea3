"""Real captures (COLMAP models, nerfstudio / Instant-NGP `transforms.json`) into a `Dataset`.

What a capture gets that a Blender folder does not:
- per-frame lenses and image sizes: every frame is undistorted (OpenCV models, `undistort.py`) onto a
  pinhole camera and resampled onto one canvas (the most common image size; other sizes are rescaled,
  their intrinsics with them, so rays stay exact). Held-out frames go through the same undistortion,
  so evaluation compares with the undistorted truth. ``undistort=False`` ignores the coefficients
  (for comparison only).
- EXIF orientation (transforms.json frames): applied when the frame declares no size or declares the
  rotated one; a frame whose declared size matches the stored pixels is read as stored (COLMAP frames
  are always read as stored, as COLMAP sees them).
- pose normalisation (`normalize.py`) computed from ALL frames, so every split shares one frame; the
  transform is kept in `Dataset.transform` for going back to the capture's own frame.
- a scene kind: "bounded" (images carry opacity: masks, or alpha channels with transparent pixels; or
  Instant-NGP `aabb_scale` 1) or "unbounded" (opaque photos: the background is part of the scene,
  modelled with contraction).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..cameras import Cameras
from ..errors import ConfigError
from .dataset import Dataset, downscale_depth, downscale_rgba
from .frames import FrameSpec, data_error, intrinsics_for
from .lens import Lens, UnsupportedLens
from .normalize import apply_to_points, normalizing_transform, similarity_scale, transform_c2w
from .undistort import remap_image, undistorted_pinhole

__all__ = ["CaptureOptions", "SCENES", "Capture", "lens_from_keys", "read_capture", "capture_dataset"]

SCENES = ("auto", "bounded", "unbounded")
_SWAPS = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
_FISHEYE_KEYS, _PERSPECTIVE_KEYS = ("k1", "k2", "k3", "k4"), ("k1", "k2", "p1", "p2", "k3")


@dataclass
class CaptureOptions:
    """How a capture is read: `undistort` (False ignores the distortion coefficients), `scene`
    (auto, bounded or unbounded)."""

    undistort: bool = True
    scene: str = "auto"

    def __post_init__(self) -> None:
        if self.scene not in SCENES:
            raise ConfigError(f"scene must be one of {', '.join(SCENES)}, got {self.scene!r}")


@dataclass
class Capture:
    """Every frame of a capture, ready to split: frames with their lenses (at the stored or EXIF-rotated
    size), whether to apply EXIF, the transform to the model frame, the scene kind and box, sparse points
    (model frame) and the canvas size."""

    source: Path
    frames: list[FrameSpec]
    lenses: list[Lens]
    exif: list[bool]
    transform: np.ndarray
    scene: str
    aabb: np.ndarray
    points: tuple[np.ndarray, np.ndarray] | None
    canvas: tuple[int, int]
    depth_unit: float = 1.0


def lens_from_keys(keys: dict, width: int, height: int, json_path: Path, label: str) -> Lens:
    """The lens of a transforms.json frame: fl_x/fl_y/cx/cy (or camera_angle_x), `camera_model`
    (nerfstudio) or `is_fisheye` (Instant-NGP), coefficients k1..k4, p1, p2."""
    fx, fy, cx, cy = intrinsics_for(keys, width, height, json_path, label)
    fisheye = bool(keys.get("is_fisheye", False))
    model = keys.get("camera_model") or ("OPENCV_FISHEYE" if fisheye else None)
    names = _FISHEYE_KEYS if model == "OPENCV_FISHEYE" else _PERSPECTIVE_KEYS
    coeffs = []
    for k in names:
        v = keys.get(k, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise data_error(json_path, f"{label} {k} must be a finite number, got {v!r}")
        coeffs.append(float(v))
    if model is None:
        model = "OPENCV" if any(coeffs) else "PINHOLE"
    if model in ("PINHOLE", "SIMPLE_PINHOLE") and any(coeffs):
        raise data_error(json_path, f"{label} camera_model {model} but distortion coefficients are given")
    dist = () if model in ("PINHOLE", "SIMPLE_PINHOLE") else tuple(coeffs if coeffs[-1] or model == "OPENCV_FISHEYE"
                                                                    else coeffs[:4])
    try:
        return Lens(model, width, height, fx, fy, cx, cy, dist)
    except UnsupportedLens as e:
        raise data_error(json_path, f"{label}: {e}") from None


def _header(path: Path) -> tuple[int, int, int, bool]:
    """(width, height, EXIF orientation, has alpha) of an image, reading only its header."""
    try:
        with Image.open(path) as im:
            orient = int(im.getexif().get(0x0112, 1) or 1)
            return im.width, im.height, orient, "A" in im.getbands() or "transparency" in im.info
    except (OSError, SyntaxError, ValueError) as e:
        raise data_error(path, f"cannot decode image ({e})") from None


def _declared(spec: FrameSpec) -> tuple[int, int] | None:
    if spec.lens is not None:
        return spec.lens.width, spec.lens.height
    w, h = spec.intrinsics.get("w"), spec.intrinsics.get("h")
    return (int(w), int(h)) if isinstance(w, (int, float)) and isinstance(h, (int, float)) else None


def _frame_size(spec: FrameSpec, source: Path) -> tuple[int, int, bool, bool]:
    """(width, height, apply EXIF, has alpha) of a frame, checked against the size it declares."""
    w, h, orient, alpha = _header(spec.image)
    rotated = (h, w) if orient in _SWAPS else (w, h)
    declared = _declared(spec)
    if spec.lens is not None:  # COLMAP: pixels as stored
        if declared != (w, h):
            raise data_error(spec.image, f"image is {w}x{h} but its camera says {declared[0]}x{declared[1]}")
        return w, h, False, alpha
    if declared is None or declared == rotated:
        return *rotated, orient != 1, alpha
    if declared == (w, h):
        return w, h, False, alpha
    raise data_error(spec.image, f"image is {w}x{h} but {source.name} says {declared[0]}x{declared[1]}")


def _transparent(images: list[Path], n: int = 8) -> bool:
    """Whether images with an alpha channel really use it: up to `n` of them, evenly spread, decoded (an
    RGBA export of an opaque photo is not an object on a transparent background)."""
    for path in images[:: max(1, len(images) // n)][:n]:
        try:
            with Image.open(path) as im:
                if im.convert("RGBA").getchannel("A").getextrema()[0] < 250:
                    return True
        except (OSError, SyntaxError, ValueError) as e:
            raise data_error(path, f"cannot decode image ({e})") from None
    return False


def _scene_kind(options: CaptureOptions, any_alpha: bool, ngp_bounded: bool | None) -> str:
    if options.scene != "auto":
        return options.scene
    if ngp_bounded is not None:
        return "bounded" if ngp_bounded else "unbounded"
    return "bounded" if any_alpha else "unbounded"


def read_capture(source: Path, frames: list[FrameSpec], options: CaptureOptions, transform: np.ndarray | None = None,
                 ngp_aabb_scale: float | None = None, points: tuple[np.ndarray, np.ndarray] | None = None) -> Capture:
    """Check every frame's image header against its declared size, build lenses, the model-frame transform
    (`transform` given by the file, e.g. Instant-NGP scale/offset, else `normalizing_transform`), scene kind,
    box ([-1, 1]³, or ±aabb_scale for a bounded Instant-NGP capture) and canvas size."""
    lenses, exif, with_alpha = [], [], []
    for spec in frames:
        w, h, use_exif, alpha = _frame_size(spec, source)
        lenses.append(spec.lens if spec.lens is not None else lens_from_keys(spec.intrinsics, w, h, source, spec.label))
        exif.append(use_exif)
        if alpha:
            with_alpha.append(spec.image)
    any_alpha = any(f.mask is not None for f in frames) or _transparent(with_alpha)
    c2w = np.stack([f.c2w for f in frames])
    t = transform if transform is not None else normalizing_transform(c2w)
    ngp_bounded = None if ngp_aabb_scale is None else ngp_aabb_scale <= 1.0
    scene = _scene_kind(options, any_alpha, ngp_bounded)
    half = float(ngp_aabb_scale) if (ngp_aabb_scale and scene == "bounded") else 1.0
    aabb = np.array([[-half] * 3, [half] * 3])
    if points is not None:
        points = (apply_to_points(t, points[0]), points[1])
    sizes = Counter((lens.width, lens.height) for lens in lenses)
    canvas = max(sizes, key=lambda s: (sizes[s], s[0] * s[1]))
    return Capture(source, frames, lenses, exif, t, scene, aabb, points, canvas)


def _target(lens: Lens, canvas: tuple[int, int], undistort: bool) -> Lens:
    """The pinhole lens a frame is resampled to: undistorted (or the coefficients dropped), on the canvas."""
    if undistort:
        pin = undistorted_pinhole(lens)
    else:
        pin = Lens("PINHOLE", lens.width, lens.height, lens.fx, lens.fy, lens.cx, lens.cy)
    if (pin.width, pin.height) == canvas:
        return pin
    return pin.scaled(canvas[0] / pin.width, canvas[1] / pin.height, *canvas)


def _read(path: Path, exif: bool, mode: str) -> np.ndarray:
    """An image file as float32 [H, W(, C)] in [0, 1] (`mode`: PIL mode, e.g. RGBA or L), EXIF applied or not."""
    try:
        with Image.open(path) as im:
            im.load()
            if exif:
                im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise data_error(path, f"cannot decode image ({e})") from None


def _decode(path: Path, exif: bool, mask: Path | None) -> np.ndarray:
    """RGBA float32 [H, W, 4] in [0, 1] (alpha 1 without an alpha channel; times the mask when given)."""
    rgba = _read(path, exif, "RGBA")
    if mask is not None:
        keep = _read(mask, exif, "L")
        if keep.shape != rgba.shape[:2]:
            size = f"{keep.shape[1]}x{keep.shape[0]}, its image {rgba.shape[1]}x{rgba.shape[0]}"
            raise data_error(mask, f"mask is {size}")
        rgba[..., 3] *= keep
    return rgba


def _depth(spec: FrameSpec, exif: bool, unit: float) -> np.ndarray:
    """Camera-z depth [H, W] float32 (capture units; 0 or non-finite = unknown) of a frame's depth map."""
    path = spec.depth
    try:
        if path.suffix.lower() == ".npy":
            z = np.load(path, allow_pickle=False).astype(np.float32) * unit
        else:
            with Image.open(path) as im:
                im.load()
                if exif:
                    im = ImageOps.exif_transpose(im)
                z = np.asarray(im, dtype=np.float32) * unit
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise data_error(path, f"cannot read depth map ({e})") from None
    if z.ndim != 2:
        raise data_error(path, f"depth map must be one channel, got shape {z.shape}")
    return z


def _ray_distance(z: np.ndarray, lens: Lens, scale: float) -> torch.Tensor:
    """Camera-z depth [H, W] on pinhole `lens` -> ray distance in model units (inf where unknown)."""
    u, v = np.meshgrid(np.arange(lens.width) + 0.5, np.arange(lens.height) + 0.5)
    stretch = np.sqrt(1 + ((u - lens.cx) / lens.fx) ** 2 + ((v - lens.cy) / lens.fy) ** 2)
    d = np.where(np.isfinite(z) & (z > 0), z * stretch * scale, np.inf)
    return torch.from_numpy(d.astype(np.float32))


def capture_dataset(cap: Capture, chosen: list[int], split: str, downscale: int, options: CaptureOptions) -> Dataset:
    """Decode, undistort and resample the frames `chosen` (indices into `cap.frames`) into a Dataset in the
    model frame, downscaled by an integer factor (area averaging)."""
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ConfigError(f"downscale must be an integer >= 1, got {downscale!r}")
    cw, ch = cap.canvas
    if cw // downscale < 1 or ch // downscale < 1:
        raise ConfigError(f"downscale {downscale} is larger than the {cw}x{ch} images")
    n, h, w = len(chosen), ch // downscale, cw // downscale
    rgb, opacity = torch.empty(n, h, w, 3), torch.empty(n, h, w, 1)
    intr = torch.empty(n, 4)
    with_depth = [cap.frames[i].depth is not None for i in chosen]
    if any(with_depth) and not all(with_depth):
        raise data_error(cap.source, f"only {sum(with_depth)} of the {n} {split} frames have a depth map")
    depth = torch.empty(n, h, w) if all(with_depth) else None
    scale = similarity_scale(cap.transform)
    for k, i in enumerate(chosen):
        spec, lens = cap.frames[i], cap.lenses[i]
        dst = _target(lens, cap.canvas, options.undistort)
        rgba = remap_image(_decode(spec.image, cap.exif[i], spec.mask), lens, dst)
        t = torch.from_numpy(np.ascontiguousarray(rgba)).clamp(0.0, 1.0)
        rgb[k], opacity[k] = downscale_rgba(t[..., :3], t[..., 3:], downscale)
        if depth is not None:
            z = _depth(spec, cap.exif[i], cap.depth_unit)
            sx, sy = z.shape[1] / lens.width, z.shape[0] / lens.height
            if abs(sx / sy - 1) > 0.02:  # a lower-resolution map (phone LiDAR) is fine, another aspect is not
                raise data_error(spec.depth, f"depth map is {z.shape[1]}x{z.shape[0]}, its image {lens.width}x"
                                             f"{lens.height}")
            src = lens.scaled(sx, sy, z.shape[1], z.shape[0])
            depth[k] = downscale_depth(_ray_distance(remap_image(z, src, dst, nearest=True), dst, scale), downscale)
        intr[k] = torch.tensor([dst.fx, dst.fy, dst.cx, dst.cy], dtype=torch.float32) / downscale
    c2w = transform_c2w(cap.transform, np.stack([cap.frames[i].c2w for i in chosen]))
    cams = Cameras(torch.tensor(c2w, dtype=torch.float32), intr[:, 0], intr[:, 1], intr[:, 2], intr[:, 3], w, h)
    names = [cap.frames[i].image.stem for i in chosen]
    points = colors = None
    if cap.points is not None:
        points = torch.tensor(cap.points[0], dtype=torch.float32)
        colors = torch.tensor(cap.points[1], dtype=torch.float32) / 255.0
    return Dataset(rgb, opacity, cams, torch.tensor(cap.aabb, dtype=torch.float32), depth, None, names,
                   cap.source.parent, split, torch.tensor(cap.transform, dtype=torch.float64), cap.scene,
                   points, colors)
