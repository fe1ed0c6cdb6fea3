"""Reading and validating transforms JSON frames and their images, shared by both loaders.

Every problem becomes a one-line :class:`DataError` naming the offending file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..cameras import Cameras
from ..errors import ConfigError, DataError
from .dataset import DEFAULT_AABB, Dataset, downscale_depth, downscale_normal, downscale_rgba
from .lens import Lens

__all__ = [
    "FrameSpec",
    "IMAGE_EXTENSIONS",
    "data_error",
    "read_json",
    "parse_c2w",
    "parse_aabb",
    "resolve_image",
    "load_rgba",
    "intrinsics_for",
    "build_dataset",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")


def data_error(path: Path | str, problem: str) -> DataError:
    """A DataError ``"PATH: problem"`` squeezed onto one line."""
    return DataError(" ".join(f"{path}: {problem}".split()))


@dataclass
class FrameSpec:
    """One validated frame: image path, 4x4 c2w (OpenGL, float64, the capture's world frame) and either
    its transforms-JSON intrinsic keys or a `Lens` (intrinsics + distortion at the image's stored size);
    `mask` an optional mask image (white = keep); `depth` an optional camera-z depth map (.npy, or a 16-bit
    PNG in the capture's depth units)."""

    image: Path
    c2w: np.ndarray
    intrinsics: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    lens: Lens | None = None
    mask: Path | None = None
    depth: Path | None = None


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON object file; missing, unreadable or malformed files raise DataError."""
    if not path.is_file():
        raise data_error(path, "does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise data_error(path, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise data_error(path, f"cannot read ({e})") from None
    if not isinstance(data, dict):
        raise data_error(path, f"expected a JSON object at top level, got {type(data).__name__}")
    return data


def parse_c2w(value: Any, json_path: Path, label: str) -> np.ndarray:
    """A finite 4x4 matrix from nested lists, or DataError naming the frame."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise data_error(json_path, f"{label} transform_matrix is not a numeric matrix") from None
    if m.shape != (4, 4):
        shape = "x".join(str(s) for s in m.shape) if m.ndim else "a scalar"
        raise data_error(json_path, f"{label} transform_matrix is {shape}, expected 4x4")
    if not np.isfinite(m).all():
        raise data_error(json_path, f"{label} transform_matrix holds NaN or infinite values")
    if abs(np.linalg.det(m[:3, :3])) < 1e-8:
        raise data_error(json_path, f"{label} transform_matrix has a singular rotation")
    return m


def parse_aabb(data: dict[str, Any], json_path: Path) -> torch.Tensor:
    """The scene box [2, 3] from the key ``"aabb"``, or the default [-1.5, 1.5]^3."""
    if "aabb" not in data:
        return torch.tensor(DEFAULT_AABB, dtype=torch.float32)
    try:
        box = np.asarray(data["aabb"], dtype=np.float64)
    except (TypeError, ValueError):
        raise data_error(json_path, "aabb is not a numeric [[min x,y,z],[max x,y,z]] list") from None
    if box.shape != (2, 3) or not np.isfinite(box).all() or not (box[0] < box[1]).all():
        raise data_error(json_path, "aabb must be [[min x,y,z],[max x,y,z]] with finite min < max")
    return torch.tensor(box, dtype=torch.float32)


def resolve_image(root: Path, file_path: Any, json_path: Path, label: str) -> Path:
    """The existing image file for ``file_path`` (relative to ``root``; extension optional)."""
    if not isinstance(file_path, str) or not file_path:
        raise data_error(json_path, f"{label} has no file_path string")
    p = root / file_path
    if p.suffix in IMAGE_EXTENSIONS:
        candidates = [p]
    else:
        candidates = [p.with_name(p.name + ext) for ext in IMAGE_EXTENSIONS] + [p]
    for c in candidates:
        if c.is_file():
            return c
    raise data_error(json_path, f"{label} image {file_path} not found (looked for {candidates[0]})")


def load_rgba(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode an image fully: rgb [H, W, 3] uint8 and alpha [H, W, 1] uint8 or None."""
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = "A" in im.getbands() or "transparency" in im.info
            im = im.convert("RGBA" if has_alpha else "RGB")
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise data_error(path, f"cannot decode image ({e})") from None
    if has_alpha:
        return arr[..., :3], arr[..., 3:]
    return arr, None


def _number(d: dict[str, Any], key: str, json_path: Path, label: str) -> float | None:
    if key not in d or d[key] is None:
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise data_error(json_path, f"{label} {key} must be a finite number, got {v!r}")
    return float(v)


def intrinsics_for(
    d: dict[str, Any], width: int, height: int, json_path: Path, label: str
) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` in pixels from fl_x/fl_y/cx/cy or camera_angle_x/_y (radians)."""
    vals = {k: _number(d, k, json_path, label) for k in INTRINSIC_KEYS}
    for key, size in (("w", width), ("h", height)):
        if vals[key] is not None and int(vals[key]) != size:
            raise data_error(json_path, f"{label} {key}={vals[key]:g} but its image is {width}x{height}")
    fx, fy = vals["fl_x"], vals["fl_y"]
    if fx is None and vals["camera_angle_x"] is not None:
        fx = 0.5 * width / math.tan(0.5 * vals["camera_angle_x"])
    if fy is None and vals["camera_angle_y"] is not None:
        fy = 0.5 * height / math.tan(0.5 * vals["camera_angle_y"])
    fx = fx if fx is not None else fy
    fy = fy if fy is not None else fx
    if fx is None or fy is None:
        raise data_error(json_path, f"{label}: no focal length (need camera_angle_x or fl_x/fl_y)")
    if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
        raise data_error(json_path, f"{label} focal length must be positive, got fx={fx:g} fy={fy:g}")
    cx = vals["cx"] if vals["cx"] is not None else 0.5 * width
    cy = vals["cy"] if vals["cy"] is not None else 0.5 * height
    return fx, fy, cx, cy


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise data_error(path, f"cannot decode image ({e})") from None


def _aux_paths(image: Path) -> tuple[Path, Path]:
    return image.with_name(image.stem + "_depth.npy"), image.with_name(image.stem + "_normal.npy")


def _load_npy(path: Path, shape: tuple[int, ...], allow_inf: bool) -> torch.Tensor:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise data_error(path, f"cannot read array ({e})") from None
    if arr.shape != shape or arr.dtype.kind != "f":
        raise data_error(path, f"expected a float array of shape {shape}, got {arr.dtype} {arr.shape}")
    bad = np.isnan(arr).any() if allow_inf else not np.isfinite(arr).all()
    if bad:
        raise data_error(path, "holds NaN" + ("" if allow_inf else " or infinite values"))
    if allow_inf and (arr < 0).any():
        raise data_error(path, "holds negative ray distances")
    return torch.from_numpy(arr.astype(np.float32))


def _aux_flags(frames: list[FrameSpec], index: int) -> bool:
    """Whether every frame has the depth (index 0) or normal (index 1) .npy; error if only some do."""
    present = [_aux_paths(f.image)[index].is_file() for f in frames]
    if any(present) and not all(present):
        missing = _aux_paths(frames[present.index(False)].image)[index]
        raise data_error(missing, "does not exist, but other frames of this split have one")
    return bool(present and all(present))


def build_dataset(
    json_path: Path,
    frames: list[FrameSpec],
    aabb: torch.Tensor,
    split: str,
    downscale: int = 1,
) -> Dataset:
    """Load and validate every image (and optional ``*_depth.npy`` / ``*_normal.npy``) of ``frames``.

    All images must share one size; ``downscale`` area-averages by an integer factor and scales the
    intrinsics by ``1/downscale`` (a bottom/right remainder of pixels is cropped).
    """
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ConfigError(f"downscale must be an integer >= 1, got {downscale!r}")
    if not frames:
        raise data_error(json_path, "has an empty frame list")
    width, height = _image_size(frames[0].image)
    for f in frames[1:]:
        size = _image_size(f.image)
        if size != (width, height):
            first = frames[0].image.name
            raise data_error(f.image, f"image is {size[0]}x{size[1]}, expected {width}x{height} like {first}")
    if width // downscale < 1 or height // downscale < 1:
        raise ConfigError(f"downscale {downscale} is larger than the {width}x{height} images")
    intr = torch.tensor([intrinsics_for(f.intrinsics, width, height, json_path, f.label) for f in frames])
    has_depth, has_normal = _aux_flags(frames, 0), _aux_flags(frames, 1)

    n, h, w = len(frames), height // downscale, width // downscale
    rgb = torch.empty(n, h, w, 3)
    alpha = torch.empty(n, h, w, 1)
    depth = torch.empty(n, h, w) if has_depth else None
    normal = torch.empty(n, h, w, 3) if has_normal else None
    for i, f in enumerate(frames):
        rgb_u8, alpha_u8 = load_rgba(f.image)
        if rgb_u8.shape[:2] != (height, width):
            raise data_error(f.image, f"decoded size {rgb_u8.shape[1]}x{rgb_u8.shape[0]} != {width}x{height}")
        c = torch.from_numpy(rgb_u8.astype(np.float32) / 255.0)
        a = (
            torch.from_numpy(alpha_u8.astype(np.float32) / 255.0)
            if alpha_u8 is not None
            else torch.ones(height, width, 1)
        )
        rgb[i], alpha[i] = downscale_rgba(c, a, downscale)
        depth_path, normal_path = _aux_paths(f.image)
        if depth is not None:
            depth[i] = downscale_depth(_load_npy(depth_path, (height, width), allow_inf=True), downscale)
        if normal is not None:
            normal[i] = downscale_normal(_load_npy(normal_path, (height, width, 3), False), downscale)

    c2w = torch.tensor(np.stack([f.c2w for f in frames]), dtype=torch.float32)
    cams = Cameras(
        c2w, intr[:, 0] / downscale, intr[:, 1] / downscale, intr[:, 2] / downscale,
        intr[:, 3] / downscale, w, h,
    )
    names = [f.image.stem for f in frames]
    return Dataset(rgb, alpha, cams, aabb, depth, normal, names, json_path.parent, split)
