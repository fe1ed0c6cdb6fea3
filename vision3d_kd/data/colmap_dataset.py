"""Loader for COLMAP folders: ``images/`` plus a sparse model (``sparse/0``, ``sparse``, ``colmap/sparse/0``
or the folder itself; binary or text). Lenses are undistorted, poses normalised and the sparse points kept
(`capture.py`). Splits: images sorted by name, every `TEST_EVERY`-th (from the first) held out as
test/val, the rest train; ``split="all"`` returns every image."""

from __future__ import annotations

from pathlib import Path

from .capture import CaptureOptions, capture_dataset, read_capture
from .colmap import colmap_frames, colmap_points, find_colmap_model, read_colmap_model
from .dataset import Dataset
from .frames import data_error

__all__ = ["load_colmap", "is_colmap_folder", "TEST_EVERY"]

TEST_EVERY = 8


def is_colmap_folder(root: Path) -> bool:
    """True when `root` holds a COLMAP sparse model (see the module docstring for where it is looked for)."""
    return find_colmap_model(Path(root)) is not None


def load_colmap(path: str | Path, split: str = "train", downscale: int = 1,
                options: CaptureOptions | None = None) -> Dataset:
    """The `split` frames of COLMAP folder `path` as a Dataset in the normalised model frame."""
    root, options = Path(path), options or CaptureOptions()
    model_dir = find_colmap_model(root)
    if model_dir is None:
        raise data_error(root, "no COLMAP model (sparse/0/cameras.bin or .txt)")
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise data_error(root, "has a COLMAP model but no images/ folder")
    model = read_colmap_model(model_dir)
    frames = colmap_frames(model, images_dir, model_dir)
    if not frames:
        raise data_error(model_dir, "the model has no registered images")
    if split not in ("train", "val", "test", "all"):
        raise data_error(root, f"unknown split {split!r} (use train, val, test or all)")
    if split == "all":
        chosen = list(range(len(frames)))
    else:
        chosen = [i for i in range(len(frames)) if (i % TEST_EVERY == 0) == (split != "train")]
    if not chosen:
        raise data_error(model_dir, f"split {split!r} has no frames ({len(frames)} images)")
    xyz, rgb = colmap_points(model)
    points = (xyz, rgb) if len(xyz) else None
    cap = read_capture(model_dir / "images.bin" if (model_dir / "images.bin").is_file() else model_dir / "images.txt",
                       frames, options, points=points)
    return capture_dataset(cap, chosen, split, downscale, options)
