"""Loader for Blender / NeRF-Synthetic folders: ``transforms_{split}.json`` plus images.

Format: top-level ``camera_angle_x`` (radians, horizontal field of view), optionally overridden by
``fl_x, fl_y, cx, cy, w, h`` (pixels) at top level or per frame; ``frames`` is a list of
``{"file_path": "./train/r_0", "transform_matrix": 4x4 camera-to-world (OpenGL)}``, with the image
extension optional and paths relative to the folder. An optional ``"aabb"`` gives the scene box.
Depth (``r_0_depth.npy``, ray distance) and normals (``r_0_normal.npy``) next to an image are loaded
when every frame of the split has them.
"""

from __future__ import annotations

from pathlib import Path

from .dataset import Dataset
from .frames import INTRINSIC_KEYS, FrameSpec, build_dataset, data_error, parse_aabb, parse_c2w, read_json
from .frames import resolve_image as _resolve_image

__all__ = ["load_blender", "parse_frames"]


def parse_frames(data: dict, root: Path, json_path: Path) -> list[FrameSpec]:
    """Validate the ``frames`` list (paths, 4x4 finite matrices) into FrameSpecs."""
    frames = data.get("frames")
    if not isinstance(frames, list):
        raise data_error(json_path, "has no 'frames' list")
    if not frames:
        raise data_error(json_path, "has an empty frame list")
    top = {k: data[k] for k in INTRINSIC_KEYS if k in data}
    specs = []
    for i, frame in enumerate(frames):
        label = f"frame {i}"
        if not isinstance(frame, dict):
            raise data_error(json_path, f"{label} is not a JSON object")
        if "transform_matrix" not in frame:
            raise data_error(json_path, f"{label} has no transform_matrix")
        c2w = parse_c2w(frame["transform_matrix"], json_path, label)
        image = _resolve_image(root, frame.get("file_path"), json_path, label)
        intr = {**top, **{k: frame[k] for k in INTRINSIC_KEYS if k in frame}}
        specs.append(FrameSpec(image, c2w, intr, label))
    return specs


def load_blender(path: str | Path, split: str = "train", downscale: int = 1) -> Dataset:
    """Load ``PATH/transforms_{split}.json``: images [N,H,W,3] straight rgb + alpha, OpenGL cameras.

    ``downscale`` is an integer area-averaging factor (alpha-premultiplied averaging).
    """
    root = Path(path)
    if not root.exists():
        raise data_error(root, "does not exist")
    json_path = root / f"transforms_{split}.json"
    data = read_json(json_path)
    if not any(k in data for k in ("camera_angle_x", "camera_angle_y", "fl_x", "fl_y")):
        frames = data.get("frames")
        per_frame = isinstance(frames, list) and frames and all(
            isinstance(f, dict) and ("fl_x" in f or "fl_y" in f) for f in frames
        )
        if not per_frame:
            raise data_error(json_path, "no camera_angle_x (or fl_x/fl_y) intrinsics")
    specs = parse_frames(data, root, json_path)
    return build_dataset(json_path, specs, parse_aabb(data, json_path), split, downscale)
