"""Posed image data: Blender and nerfstudio loaders, procedural SDF scenes with ground truth."""

from __future__ import annotations

from pathlib import Path

from .blender import load_blender
from .capture import SCENES, CaptureOptions
from .colmap_dataset import is_colmap_folder, load_colmap
from .dataset import DEFAULT_AABB, Dataset
from .frames import data_error
from .nerfstudio import load_nerfstudio
from .procedural import write_scene
from .sdf import SCENE_NAMES, SDFScene, load_scene_sdf, scene_sdf

__all__ = [
    "Dataset",
    "CaptureOptions",
    "SCENES",
    "DEFAULT_AABB",
    "load_dataset",
    "held_out_split",
    "load_blender",
    "load_nerfstudio",
    "load_colmap",
    "write_scene",
    "scene_sdf",
    "load_scene_sdf",
    "SDFScene",
    "SCENE_NAMES",
]


def load_dataset(path: str | Path, split: str = "train", downscale: int = 1, undistort: bool = True,
                 scene: str = "auto") -> Dataset:
    """Load a Blender folder (``transforms_train.json``) or a capture: nerfstudio / Instant-NGP
    (``transforms.json``) or COLMAP (``images/`` + ``sparse/0``), in that order of precedence.
    ``undistort=False`` ignores lens distortion (for comparison only); ``scene`` (auto, bounded,
    unbounded) overrides the scene kind a capture's loader infers."""
    root = Path(path)
    options = CaptureOptions(undistort, scene)
    if not root.exists():
        raise data_error(root, "does not exist")
    if not root.is_dir():
        raise data_error(root, "is not a folder (expected a dataset folder with transforms JSON)")
    if (root / "transforms_train.json").is_file():
        ds = load_blender(root, split, downscale)
        ds.scene = "bounded" if scene == "auto" else scene
        return ds
    if (root / "transforms.json").is_file():
        return load_nerfstudio(root, split, downscale, options)
    if is_colmap_folder(root):
        return load_colmap(root, split, downscale, options)
    raise data_error(root, "no transforms_train.json, transforms.json or COLMAP model (sparse/0)")


def held_out_split(path: str | Path) -> str | None:
    """Name of the held-out split of a dataset folder: 'test', else 'val', else None (nothing held out).

    A capture (``transforms.json`` or a COLMAP model, no Blender files) always has one: its loader holds
    out every ``TEST_EVERY``-th frame (or the listed test/val files) as 'test'."""
    root = Path(path)
    if not (root / "transforms_train.json").is_file() and ((root / "transforms.json").is_file()
                                                           or is_colmap_folder(root)):
        return "test"
    for split in ("test", "val"):
        if (root / f"transforms_{split}.json").is_file():
            return split
    return None
