"""Loader for nerfstudio folders: one ``transforms.json`` for all frames.

Intrinsics ``fl_x, fl_y, cx, cy, w, h`` (pixels) sit at top level or per frame; ``camera_angle_x``
(radians) is accepted instead of a focal length. Poses are 4x4 camera-to-world (OpenGL, as
nerfstudio writes them); lens distortion coefficients are ignored, and only pinhole-like camera
models are accepted.

Splits: when the JSON lists ``train_filenames`` / ``val_filenames`` / ``test_filenames`` those
decide (``val`` falls back to the test list); otherwise frame ``i`` (in JSON order) is a test/val
frame when ``i % 8 == 0`` and a train frame otherwise. ``split="all"`` returns every frame.
"""

from __future__ import annotations

import os
from pathlib import Path

from .blender import parse_frames
from .dataset import Dataset
from .frames import FrameSpec, build_dataset, data_error, parse_aabb, read_json

__all__ = ["load_nerfstudio", "TEST_EVERY"]

TEST_EVERY = 8
_PINHOLE_MODELS = {"PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL"}


def _norm(p: str) -> str:
    return os.path.normpath(p).replace("\\", "/")


def _select(data: dict, frames: list[dict], specs: list[FrameSpec], split: str, json_path: Path
            ) -> list[FrameSpec]:
    if split == "all":
        return specs
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
        chosen = [s for f, s in zip(frames, specs, strict=True) if _norm(f["file_path"]) in wanted]
        if len(chosen) != len(wanted):
            raise data_error(json_path, f"{key} names {len(wanted) - len(chosen)} files that no frame has")
    elif any(k in data for k in ("train_filenames", "val_filenames", "test_filenames")):
        raise data_error(json_path, f"has split lists but no {key}")
    else:
        is_test = split != "train"
        chosen = [s for i, s in enumerate(specs) if (i % TEST_EVERY == 0) == is_test]
    if not chosen:
        raise data_error(json_path, f"split {split!r} has no frames")
    return chosen


def load_nerfstudio(path: str | Path, split: str = "train", downscale: int = 1) -> Dataset:
    """Load the ``split`` frames of ``PATH/transforms.json`` (see the module docstring for splits)."""
    root = Path(path)
    if not root.exists():
        raise data_error(root, "does not exist")
    json_path = root / "transforms.json"
    data = read_json(json_path)
    model = data.get("camera_model", "PINHOLE")
    if model not in _PINHOLE_MODELS:
        raise data_error(json_path, f"camera_model {model!r} is not supported (pinhole models only)")
    focal = ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y")
    frames = data.get("frames")
    if not any(k in data for k in focal) and not (
        isinstance(frames, list) and frames
        and all(isinstance(f, dict) and any(k in f for k in focal) for f in frames)
    ):
        raise data_error(json_path, "no focal length (fl_x/fl_y or camera_angle_x)")
    specs = parse_frames(data, root, json_path)
    chosen = _select(data, frames, specs, split, json_path)
    return build_dataset(json_path, chosen, parse_aabb(data, json_path), split, downscale)
