"""Regenerate the repository's own bad-input entries (committed; run once: `python tests/bad_inputs/make.py`).

Each entry is ENTRY/images/*.png + ENTRY/sparse/0/{cameras,images,points3D}.{bin,txt}; README.md says
what is wrong with each one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from vision3d_kd.data.colmap import ColmapCamera, ColmapImage, ColmapModel, colmap_from_c2w, write_colmap_model

HERE = Path(__file__).resolve().parent


def _c2w(x: float) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, 3] = [x, 0.0, 2.0]
    return c2w


def _model(cameras: list[ColmapCamera], names: list[str], cam_ids: list[int]) -> ColmapModel:
    images = {}
    for i, (name, cam) in enumerate(zip(names, cam_ids, strict=True), start=1):
        qvec, tvec = colmap_from_c2w(_c2w(0.5 * i))
        images[i] = ColmapImage(i, cam, name, qvec, tvec)
    xyz = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, -0.1], [-0.2, 0.1, 0.3]])
    rgb = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200]], np.uint8)
    return ColmapModel({c.id: c for c in cameras}, images, xyz, rgb)


def _entry(name: str, model: ColmapModel, images: dict[str, tuple[int, int]], binary: bool = True) -> Path:
    root = HERE / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    for image, (w, h) in images.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / image)
    write_colmap_model(model, root / "sparse" / "0", binary=binary)
    return root


def images() -> None:
    """Single pictures for `v3kd image-to-3d` (files named image_*)."""
    (HERE / "image_empty.png").write_bytes(b"")
    (HERE / "image_not_an_image.png").write_text("this is a text file with a .png name\n")
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., :3] = 200
    Image.fromarray(rgba, "RGBA").save(HERE / "image_transparent.png")
    grey = np.full((24, 32), 0.5, np.float32)
    grey[3, 4] = np.nan
    Image.fromarray(grey, "F").save(HERE / "image_nan.tiff")
    good = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(good).save(HERE / "image_truncated.png")
    data = (HERE / "image_truncated.png").read_bytes()
    (HERE / "image_truncated.png").write_bytes(data[: len(data) // 2])


def main() -> None:
    images()
    pinhole = ColmapCamera(1, "PINHOLE", 32, 24, (30.0, 30.0, 16.0, 12.0))
    fov = ColmapCamera(2, "FOV", 32, 24, (30.0, 30.0, 16.0, 12.0, 0.9))
    sizes = {"a.png": (32, 24), "b.png": (32, 24)}
    _entry("colmap_unsupported_model", _model([pinhole, fov], list(sizes), [1, 2]), sizes)

    root = _entry("colmap_missing_image", _model([pinhole], list(sizes), [1, 1]), sizes)
    (root / "images" / "b.png").unlink()

    root = _entry("colmap_truncated_points", _model([pinhole], list(sizes), [1, 1]), sizes)
    points = root / "sparse" / "0" / "points3D.bin"
    points.write_bytes(points.read_bytes()[:-20])

    big = ColmapCamera(1, "PINHOLE", 64, 48, (60.0, 60.0, 32.0, 24.0))
    _entry("colmap_inconsistent_size", _model([big], list(sizes), [1, 1]), sizes)

    root = _entry("colmap_text_garbled", _model([pinhole], list(sizes), [1, 1]), sizes, binary=False)
    images_txt = root / "sparse" / "0" / "images.txt"
    lines = images_txt.read_text().splitlines(keepends=True)
    first = next(i for i, ln in enumerate(lines) if ln.startswith("2 "))
    tok = lines[first].split(" ")
    tok[6] = "0.5x"  # TY is no longer a number
    lines[first] = " ".join(tok)
    images_txt.write_text("".join(lines))


if __name__ == "__main__":
    main()
