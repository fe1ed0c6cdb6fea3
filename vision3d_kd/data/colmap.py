"""COLMAP sparse models: find, read and write them (binary or text), and turn them into frames and points.

COLMAP stores world-to-camera poses in OpenCV axes (x right, y down, z forward) as ``qvec`` (w,x,y,z) and
``tvec``; frames here carry ``c2w`` in OpenGL axes (x right, y up, looking down -z) in COLMAP's world frame:
``c2w = inv([R|t]) @ diag(1, -1, -1, 1)``. Pixel centres sit at ``i + 0.5`` in both, so ``cx, cy`` pass
through unchanged. Reading needs no pycolmap; every bad input is a one-line DataError naming its file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..errors import DataError
from . import colmap_files as _cf
from .colmap_files import CAMERA_MODELS, MODEL_IDS, ColmapCamera, ColmapImage, ColmapModel
from .frames import FrameSpec, data_error
from .lens import SUPPORTED_MODELS, Lens, UnsupportedLens

__all__ = [
    "CAMERA_MODELS", "ColmapCamera", "ColmapImage", "ColmapModel", "find_colmap_model", "read_colmap_model",
    "write_colmap_model", "colmap_frames", "colmap_points", "qvec_to_rotmat", "rotmat_to_qvec",
    "c2w_from_colmap", "colmap_from_c2w", "camera_from_lens",
]

_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])
_CANDIDATES = ("sparse/0", "sparse", "colmap/sparse/0", ".")


def find_colmap_model(root: Path | str) -> Path | None:
    """The first of ``root/sparse/0``, ``root/sparse``, ``root/colmap/sparse/0``, ``root`` holding
    ``cameras.bin`` or ``cameras.txt``; None when none does."""
    root = Path(root)
    for sub in _CANDIDATES:
        folder = root if sub == "." else root / sub
        if (folder / "cameras.bin").is_file() or (folder / "cameras.txt").is_file():
            return folder
    return None


def model_files(folder: Path) -> dict[str, Path]:
    """The cameras / images / points3D files of a model folder: ``.bin`` when cameras.bin exists, else ``.txt``."""
    ext = ".bin" if (folder / "cameras.bin").is_file() else ".txt"
    return {k: folder / f"{k}{ext}" for k in ("cameras", "images", "points3D")}


def read_colmap_model(folder: Path | str) -> ColmapModel:
    """Read and validate the sparse model in ``folder`` (binary preferred over text)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise data_error(folder, "does not exist or is not a folder")
    files = model_files(folder)
    for path in files.values():
        if not path.is_file():
            raise data_error(path, "does not exist (a COLMAP model needs cameras, images and points3D files)")
    binary = files["cameras"].suffix == ".bin"
    cameras = (_cf.parse_cameras_bin if binary else _cf.parse_cameras_txt)(files["cameras"])
    images = (_cf.parse_images_bin if binary else _cf.parse_images_txt)(files["images"])
    ids, xyz, rgb, err, tracks = (_cf.parse_points_bin if binary else _cf.parse_points_txt)(files["points3D"])
    model = ColmapModel(cameras, images, xyz, rgb, err, ids, tracks)
    _validate(model, files)
    return model


def _validate(model: ColmapModel, files: dict[str, Path]) -> None:
    """Finite values, positive sizes, known cameras, unique names and point ids (DataError naming the file)."""
    for cam in model.cameras.values():
        if not np.isfinite(cam.params).all():
            raise data_error(files["cameras"], f"camera {cam.id} has a NaN or infinite parameter")
        if cam.width < 1 or cam.height < 1:
            raise data_error(files["cameras"], f"camera {cam.id} has image size {cam.width}x{cam.height}")
    names: set[str] = set()
    for im in model.images.values():
        label = f"image {im.id} ({im.name})"
        if im.camera_id not in model.cameras:
            raise data_error(files["images"], f"{label} uses camera {im.camera_id}, which "
                                              f"{files['cameras'].name} does not define")
        if not (np.isfinite(im.qvec).all() and np.isfinite(im.tvec).all()):
            raise data_error(files["images"], f"{label} has a NaN or infinite pose")
        if np.linalg.norm(im.qvec) < 1e-12:
            raise data_error(files["images"], f"{label} has a zero quaternion")
        if not im.name or im.name in names:
            raise data_error(files["images"], f"{label}: image names must be non-empty and unique")
        names.add(im.name)
    bad = ~(np.isfinite(model.points_xyz).all(1) & np.isfinite(model.points_error))
    if bad.any():
        raise data_error(files["points3D"], f"point {int(model.point_ids[np.argmax(bad)])} has a NaN or "
                                            "infinite position or error")
    if len(np.unique(model.point_ids)) != len(model.point_ids):
        raise data_error(files["points3D"], "a point id appears twice")


def write_colmap_model(model: ColmapModel, folder: Path | str, binary: bool = True) -> Path:
    """Write cameras / images / points3D (``.bin`` or ``.txt``) into ``folder`` (created if missing), each
    file atomically; returns the folder. Unknown camera models or wrong parameter counts are a DataError."""
    folder = Path(folder)
    for cam in model.cameras.values():
        if cam.model not in MODEL_IDS or len(cam.params) != CAMERA_MODELS[MODEL_IDS[cam.model]][1]:
            raise DataError(f"{folder}: camera {cam.id} has model {cam.model!r} with {len(cam.params)} parameters, "
                            "which COLMAP cannot store")
    folder.mkdir(parents=True, exist_ok=True)
    if binary:
        blobs = {"cameras.bin": _cf.cameras_bin(model.cameras), "images.bin": _cf.images_bin(model.images),
                 "points3D.bin": _cf.points_bin(model)}
    else:
        blobs = {"cameras.txt": _cf.cameras_txt(model.cameras), "images.txt": _cf.images_txt(model.images),
                 "points3D.txt": _cf.points_txt(model)}
    for name, blob in blobs.items():
        atomic_write(folder / name, blob)
    return folder


# ------------------------------------------------------------------------------------------------ poses


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """3x3 rotation of a (w, x, y, z) quaternion (normalised first)."""
    w, x, y, z = np.asarray(qvec, np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_qvec(rot: np.ndarray) -> np.ndarray:
    """(w, x, y, z) unit quaternion with w >= 0 of a 3x3 rotation (Shepperd's method: stable for any angle)."""
    r = np.asarray(rot, np.float64)
    trace = np.trace(r)
    diag = np.diag(r)
    k = int(np.argmax([trace, *diag]))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i, j, m = k - 1, k % 3, (k + 1) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[m, m])
        q = [0.0] * 4
        q[0] = (r[m, j] - r[j, m]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + m] = (r[m, i] + r[i, m]) / s
    q = np.array(q)
    return (q if q[0] >= 0 else -q) / np.linalg.norm(q)


def c2w_from_colmap(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """4x4 camera-to-world, OpenGL axes, float64, from COLMAP's world-to-camera (OpenCV axes) qvec / tvec."""
    rot = qvec_to_rotmat(qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = rot.T
    c2w[:3, 3] = -rot.T @ np.asarray(tvec, np.float64)
    return c2w @ _GL_FROM_CV


def colmap_from_c2w(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(qvec [4] w,x,y,z, tvec [3]) world-to-camera in OpenCV axes from a rigid 4x4 OpenGL camera-to-world."""
    c2w_cv = np.asarray(c2w, np.float64) @ _GL_FROM_CV
    rot = c2w_cv[:3, :3].T
    return rotmat_to_qvec(rot), -rot @ c2w_cv[:3, 3]


def camera_from_lens(cam_id: int, lens: Lens) -> ColmapCamera:
    """The COLMAP camera of a lens (UnsupportedLens when COLMAP cannot hold it, e.g. a non-zero k3)."""
    model, params = lens.to_colmap()
    return ColmapCamera(cam_id, model, lens.width, lens.height, tuple(float(p) for p in params))


# ------------------------------------------------------------------------------------------------ frames


def _lens(cam: ColmapCamera, cameras_file: Path) -> Lens:
    if cam.model not in SUPPORTED_MODELS:
        raise data_error(cameras_file, f"camera {cam.id} uses {cam.model}, which is not supported "
                                       f"(supported: {', '.join(SUPPORTED_MODELS)})")
    try:
        return Lens.from_colmap(cam.model, cam.width, cam.height, cam.params)
    except UnsupportedLens as e:
        raise data_error(cameras_file, f"camera {cam.id}: {e}") from None


def _mask_for(images_dir: Path, name: str) -> Path | None:
    masks = images_dir.parent / "masks"
    for candidate in (masks / (name + ".png"), (masks / name).with_suffix(".png")):
        if candidate.is_file():
            return candidate
    return None


def colmap_frames(model: ColmapModel, images_dir: Path | str, model_dir: Path | str) -> list[FrameSpec]:
    """One FrameSpec per registered image, sorted by name: ``c2w`` [4,4] OpenGL float64 in COLMAP's world
    frame, ``lens`` from its camera, ``image`` under ``images_dir`` (must exist), ``mask`` from
    ``images_dir/../masks/NAME.png`` or ``masks/STEM.png`` when present. ``model_dir`` names files in errors."""
    images_dir, model_dir = Path(images_dir), Path(model_dir)
    files = model_files(model_dir)
    lenses: dict[int, Lens] = {}
    frames = []
    for im in sorted(model.images.values(), key=lambda im: im.name):
        if im.camera_id not in model.cameras:
            raise data_error(files["images"], f"image {im.id} ({im.name}) uses camera {im.camera_id}, which "
                                              f"{files['cameras'].name} does not define")
        if im.camera_id not in lenses:
            lenses[im.camera_id] = _lens(model.cameras[im.camera_id], files["cameras"])
        path = images_dir / im.name
        if not path.is_file():
            raise data_error(files["images"], f"image {im.id} ({im.name}) not found: {path} does not exist")
        frames.append(FrameSpec(path, c2w_from_colmap(im.qvec, im.tvec), label=f"image {im.name}",
                                lens=lenses[im.camera_id], mask=_mask_for(images_dir, im.name)))
    return frames


def colmap_points(model: ColmapModel) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [P,3] float64, rgb [P,3] uint8) of the model's 3D points in COLMAP's world frame."""
    return model.points_xyz.astype(np.float64, copy=True), model.points_rgb.astype(np.uint8, copy=True)
