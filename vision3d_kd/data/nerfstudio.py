"""Loader for nerfstudio and Instant-NGP folders: one ``transforms.json`` for all frames.

Keys read (top level, or per frame where nerfstudio allows it):
- intrinsics ``fl_x, fl_y, cx, cy, w, h`` (pixels) or ``camera_angle_x/_y`` (radians); frames may differ
  in size and intrinsics (they are resampled onto one canvas, see `capture.py`);
- lens: ``camera_model`` (PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE; others
  are refused), Instant-NGP's ``is_fisheye``, coefficients ``k1 k2 k3 k4 p1 p2`` — undistorted at load;
- ``mask_path`` per frame: an object mask (white = object), multiplied into the image's opacity;
- ``depth_file_path`` per frame: camera-z depth (16-bit PNG or .npy, times ``depth_unit_scale_factor``,
  default 1e-3: millimetres, as nerfstudio), possibly at a lower resolution; becomes `Dataset.depth`
  (ray distance, model units);
- ``ply_file_path``: sparse points (nerfstudio's ``sparse_pc.ply``), kept in the model frame;
- the frame: ``aabb`` (a box in the file's own frame: used as is, no normalisation); else Instant-NGP's
  ``scale`` / ``offset`` / ``aabb_scale`` (its unit cube [0, 1]³ becomes [-1, 1]³; ``aabb_scale`` > 1 means
  an unbounded scene); else the poses are normalised (`normalize.py`). Poses are 4x4 camera-to-world
  (OpenGL), EXIF orientation as `capture.py` says.

Splits: when the JSON lists ``train_filenames`` / ``val_filenames`` / ``test_filenames`` those
decide (``val`` falls back to the test list); otherwise frame ``i`` (in JSON order) is a test/val
frame when ``i % 8 == 0`` and a train frame otherwise. ``split="all"`` returns every frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .blender import parse_frames
from .capture import CaptureOptions, capture_dataset, read_capture
from .dataset import Dataset
from .frames import FrameSpec, data_error, parse_aabb, read_json
from .normalize import ngp_transform

__all__ = ["load_nerfstudio", "TEST_EVERY"]

TEST_EVERY = 8
_NGP_KEYS = ("scale", "offset", "aabb_scale")


def _norm(p: str) -> str:
    return os.path.normpath(p).replace("\\", "/")


def _select(data: dict, frames: list[dict], split: str, json_path: Path) -> list[int]:
    """Indices of the `split` frames (see the module docstring)."""
    if split == "all":
        return list(range(len(frames)))
    if split not in ("train", "val", "test"):
        raise data_error(json_path, f"unknown split {split!r} (use train, val, test or all)")
    key = {"train": "train_filenames", "val": "val_filenames", "test": "test_filenames"}[split]
    if split == "val" and key not in data:
        key = "test_filenames"
    if key in data:
        names = data[key]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise data_error(json_path, f"{key} must be a list of file paths")
        wanted = {_norm(n) for n in names}
        chosen = [i for i, f in enumerate(frames) if _norm(f["file_path"]) in wanted]
        if len(chosen) != len(wanted):
            raise data_error(json_path, f"{key} names {len(wanted) - len(chosen)} files that no frame has")
    elif any(k in data for k in ("train_filenames", "val_filenames", "test_filenames")):
        raise data_error(json_path, f"has split lists but no {key}")
    else:
        is_test = split != "train"
        chosen = [i for i in range(len(frames)) if (i % TEST_EVERY == 0) == is_test]
    if not chosen:
        raise data_error(json_path, f"split {split!r} has no frames")
    return chosen


def _number(data: dict, key: str, json_path: Path, shape: tuple[int, ...] = ()) -> np.ndarray | None:
    if key not in data:
        return None
    try:
        v = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        v = np.asarray(np.nan)
    if v.shape != shape or not np.isfinite(v).all():
        raise data_error(json_path, f"{key} must be {'a number' if not shape else f'{shape[0]} numbers'}")
    return v


def _ngp_frame(data: dict, json_path: Path) -> tuple[np.ndarray | None, float | None]:
    """(model-frame transform, aabb_scale) from Instant-NGP's keys, or (None, None) when it has none."""
    if not any(k in data for k in _NGP_KEYS):
        return None, None
    scale = _number(data, "scale", json_path)
    offset = _number(data, "offset", json_path, (3,))
    aabb_scale = _number(data, "aabb_scale", json_path)
    if (scale is not None and scale <= 0) or (aabb_scale is not None and aabb_scale <= 0):
        raise data_error(json_path, "scale and aabb_scale must be positive")
    t = ngp_transform(0.33 if scale is None else float(scale), np.full(3, 0.5) if offset is None else offset)
    return t, None if aabb_scale is None else float(aabb_scale)


def _side_files(frames: list[dict], specs: list[FrameSpec], root: Path, json_path: Path) -> None:
    """Attach each frame's ``mask_path`` and ``depth_file_path`` (relative to the folder; must exist)."""
    for f, spec in zip(frames, specs, strict=True):
        for key, attr in (("mask_path", "mask"), ("depth_file_path", "depth")):
            if key in f:
                path = root / str(f[key])
                if not path.is_file():
                    raise data_error(json_path, f"{spec.label} {key} {f[key]} not found")
                setattr(spec, attr, path)


def load_nerfstudio(path: str | Path, split: str = "train", downscale: int = 1,
                    options: CaptureOptions | None = None) -> Dataset:
    """Load the ``split`` frames of ``PATH/transforms.json`` (see the module docstring)."""
    root = Path(path)
    if not root.exists():
        raise data_error(root, "does not exist")
    json_path = root / "transforms.json"
    data = read_json(json_path)
    focal = ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y")
    frames = data.get("frames")
    if not any(k in data for k in focal) and not (
        isinstance(frames, list) and frames
        and all(isinstance(f, dict) and any(k in f for k in focal) for f in frames)
    ):
        raise data_error(json_path, "no focal length (fl_x/fl_y or camera_angle_x)")
    specs = parse_frames(data, root, json_path)
    for f, spec in zip(frames, specs, strict=True):
        if "camera_model" in data and "camera_model" not in spec.intrinsics:
            spec.intrinsics["camera_model"] = data["camera_model"]
        for k in ("camera_model", "is_fisheye", "k1", "k2", "k3", "k4", "p1", "p2"):
            if k in f or (k in data and k not in spec.intrinsics):
                spec.intrinsics[k] = f.get(k, data.get(k))
    _side_files(frames, specs, root, json_path)
    chosen = _select(data, frames, split, json_path)
    transform, aabb_scale = _ngp_frame(data, json_path)
    options = options or CaptureOptions()
    if "aabb" in data:  # an explicit box in the file's own frame: no normalisation
        transform, box = np.eye(4), parse_aabb(data, json_path).numpy().astype(np.float64)
    cap = read_capture(json_path, specs, options, transform, aabb_scale, _points(data, root, json_path))
    unit = _number(data, "depth_unit_scale_factor", json_path)
    cap.depth_unit = 1e-3 if unit is None else float(unit)
    if "aabb" in data:
        cap.aabb = box
        cap.scene = "bounded" if options.scene == "auto" else options.scene
    return capture_dataset(cap, chosen, split, downscale, options)


def _points(data: dict, root: Path, json_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """Sparse points (xyz float64 [P,3] in the file's frame, rgb uint8 [P,3]) from ``ply_file_path``."""
    if "ply_file_path" not in data:
        return None
    ply = root / str(data["ply_file_path"])
    if not ply.is_file():
        raise data_error(json_path, f"ply_file_path {data['ply_file_path']} not found")
    from .capture_io import read_points_ply

    return read_points_ply(ply)
