"""Posed image data: Blender and nerfstudio loaders, procedural SDF scenes with ground truth."""

from __future__ import annotations

from pathlib import Path

from .blender import load_blender
from .dataset import DEFAULT_AABB, Dataset
from .frames import data_error
from .nerfstudio import load_nerfstudio
from .procedural import write_scene
from .sdf import SCENE_NAMES, SDFScene, load_scene_sdf, scene_sdf

__all__ = [
    "Dataset",
    "DEFAULT_AABB",
    "load_dataset",
    "load_blender",
    "load_nerfstudio",
    "write_scene",
    "scene_sdf",
    "load_scene_sdf",
    "SDFScene",
    "SCENE_NAMES",
]


def load_dataset(path: str | Path, split: str = "train", downscale: int = 1) -> Dataset:
    """Load a Blender folder (``transforms_train.json``) or a nerfstudio folder (``transforms.json``)."""
    root = Path(path)
    if not root.exists():
        raise data_error(root, "does not exist")
    if not root.is_dir():
        raise data_error(root, "is not a folder (expected a dataset folder with transforms JSON)")
    if (root / "transforms_train.json").is_file():
        return load_blender(root, split, downscale)
    if (root / "transforms.json").is_file():
        return load_nerfstudio(root, split, downscale)
    raise data_error(root, "no transforms_train.json or transforms.json")
