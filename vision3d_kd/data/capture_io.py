"""Write a posed capture the way nerfstudio and COLMAP tools expect it, and read point-cloud PLYs back.

``write_capture(out, frames, points_xyz, points_rgb)`` produces::

    out/images/NAME                    PNG images (NAME as given, ending in .png)
    out/sparse/0/{cameras,images,points3D}.bin   COLMAP model, one camera per distinct Lens
    out/transforms.json                nerfstudio layout: per-frame intrinsics, c2w OpenGL, "ply_file_path"
    out/sparse_pc.ply                  binary little-endian float x y z + uchar red green blue

Poses are camera-to-world 4x4 in OpenGL axes (x right, y up, looking down -z) in the capture's world frame;
intrinsics in pixels with pixel (i, j) centred at (i + 0.5, j + 0.5), as in COLMAP and nerfstudio.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from ..checkpoint import atomic_write
from ..errors import DataError
from .colmap import ColmapImage, ColmapModel, camera_from_lens, colmap_from_c2w, write_colmap_model
from .frames import data_error
from .lens import Lens, UnsupportedLens
from .splat_io import read_ply_vertices

__all__ = ["CapturedFrame", "write_capture", "transforms_frame", "write_transforms_json", "write_points_ply",
           "read_points_ply", "check_c2w",
           "staging_folder", "refuse_existing"]


@dataclass(eq=False)
class CapturedFrame:
    """One captured view: ``name`` a file name ending in .png, ``rgb`` [H,W,3] uint8, ``c2w`` [4,4] OpenGL
    camera-to-world (rigid), ``lens`` its camera (``width x height`` must match ``rgb``)."""

    name: str
    rgb: np.ndarray
    c2w: np.ndarray
    lens: Lens


def check_c2w(c2w: Any, where: str) -> np.ndarray:
    """A finite rigid 4x4 camera-to-world as float64, or a DataError ``where: ...``."""
    m = np.asarray(c2w, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise DataError(f"{where}: c2w must be a finite 4x4 matrix")
    rot = m[:3, :3]
    if not (np.allclose(rot.T @ rot, np.eye(3), atol=1e-5) and np.linalg.det(rot) > 0
            and np.allclose(m[3], [0, 0, 0, 1])):
        raise DataError(f"{where}: c2w is not a rigid transform (rotation + translation)")
    return m


def transforms_frame(file_path: str, c2w: np.ndarray, lens: Lens) -> dict[str, Any]:
    """A nerfstudio frame entry: file_path, transform_matrix (c2w OpenGL) and the lens's intrinsics
    (fl_x, fl_y, cx, cy, w, h in pixels; k1, k2, p1, p2[, k3] or fisheye k1..k4)."""
    entry: dict[str, Any] = {"file_path": file_path, "transform_matrix": np.asarray(c2w, float).tolist(),
                             "fl_x": float(lens.fx), "fl_y": float(lens.fy), "cx": float(lens.cx),
                             "cy": float(lens.cy), "w": int(lens.width), "h": int(lens.height),
                             "camera_model": lens.model}
    d = [float(v) for v in lens.dist] + [0.0] * max(0, 4 - len(lens.dist))
    if lens.is_fisheye:
        entry.update(k1=d[0], k2=d[1], k3=d[2], k4=d[3])
    else:
        entry.update(k1=d[0], k2=d[1], p1=d[2], p2=d[3])
        if len(d) > 4:
            entry["k3"] = d[4]
    return entry


def write_transforms_json(path: Path | str, file_paths: Sequence[str], c2ws: Sequence[np.ndarray],
                          lenses: Sequence[Lens], ply_file_path: str | None = "sparse_pc.ply",
                          extra: dict[str, Any] | None = None) -> Path:
    """Atomically write a nerfstudio ``transforms.json``: one frame per (file path relative to the JSON,
    c2w [4,4] OpenGL, lens); ``camera_model`` at top level when all frames share it, ``extra`` merged at
    top level. Returns ``path``."""
    path = Path(path)
    if not (len(file_paths) == len(c2ws) == len(lenses)) or not file_paths:
        raise DataError(f"{path}: need one c2w and one lens per file path, and at least one frame")
    frames = [transforms_frame(f, check_c2w(m, f"{path}: frame {f}"), lens)
              for f, m, lens in zip(file_paths, c2ws, lenses, strict=True)]
    data: dict[str, Any] = {}
    models = {f["camera_model"] for f in frames}
    if len(models) == 1:
        data["camera_model"] = models.pop()
        for f in frames:
            del f["camera_model"]
    data["frames"] = frames
    if ply_file_path is not None:
        data["ply_file_path"] = ply_file_path
    for key, value in (extra or {}).items():
        if key in data:
            raise DataError(f"{path}: extra key {key!r} would overwrite a transforms.json field")
        data[key] = value
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: cannot write transforms.json ({e})") from None
    atomic_write(path, text)
    return path


def _check_points(xyz: Any, rgb: Any, where: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.asarray(xyz, dtype=np.float64)
    rgb = np.asarray(rgb)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or not np.isfinite(xyz).all():
        raise DataError(f"{where}: points_xyz must be a finite [P, 3] array, got shape {xyz.shape}")
    if rgb.shape != xyz.shape or rgb.dtype != np.uint8:
        raise DataError(f"{where}: points_rgb must be a uint8 [P, 3] array like points_xyz, got {rgb.dtype} "
                        f"{rgb.shape}")
    return xyz, rgb


def write_points_ply(path: Path | str, xyz: np.ndarray, rgb: np.ndarray) -> Path:
    """Atomically write a binary little-endian PLY: float x y z (world units) + uchar red green blue."""
    path = Path(path)
    xyz, rgb = _check_points(xyz, rgb, path)
    table = np.zeros(len(xyz), np.dtype([("xyz", "<f4", (3,)), ("rgb", "u1", (3,))]))
    table["xyz"], table["rgb"] = xyz, rgb
    header = ("ply\nformat binary_little_endian 1.0\ncomment written by vision3d_kd\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n").encode("ascii")

    def write(f: BinaryIO) -> None:
        f.write(header)
        f.write(table.tobytes())

    atomic_write(path, write)
    return path


def read_points_ply(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [P,3] float64, rgb [P,3] uint8) from a binary or ASCII PLY's vertex element; colours from
    red/green/blue (0..255), mid-grey 128 when absent."""
    cols = read_ply_vertices(path)
    missing = [k for k in ("x", "y", "z") if k not in cols]
    if missing:
        raise DataError(f"{path}: PLY vertices lack {', '.join(missing)}")
    xyz = np.stack([np.asarray(cols[k], np.float64) for k in "xyz"], 1)
    if not np.isfinite(xyz).all():
        raise DataError(f"{path}: PLY vertex {int(np.argmin(np.isfinite(xyz).all(1)))} has a NaN or infinite "
                        "position")
    names = ("red", "green", "blue")
    if not all(k in cols for k in names):
        return xyz, np.full(xyz.shape, 128, np.uint8)
    rgb = np.stack([np.asarray(cols[k], np.float64) for k in names], 1)
    if not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 255:
        raise DataError(f"{path}: PLY colours must lie in 0..255")
    return xyz, np.round(rgb).astype(np.uint8)


def _check_frames(out: Path, frames: Sequence[CapturedFrame]) -> None:
    if not frames:
        raise DataError(f"{out}: a capture needs at least one frame")
    seen: set[str] = set()
    for f in frames:
        name = f.name
        plain = name.endswith(".png") and len(name) > 4 and Path(name).name == name and "\\" not in name
        if not plain or name in seen:
            raise DataError(f"{out}: frame name {name!r} must be a unique plain file name ending in .png")
        seen.add(name)
        rgb = np.asarray(f.rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DataError(f"{out}: frame {name} rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
        if rgb.shape[:2] != (f.lens.height, f.lens.width):
            raise DataError(f"{out}: frame {name} image is {rgb.shape[1]}x{rgb.shape[0]} but its lens is "
                            f"{f.lens.width}x{f.lens.height}")
        check_c2w(f.c2w, f"{out}: frame {name}")


def _colmap_model(frames: Sequence[CapturedFrame], xyz: np.ndarray, rgb: np.ndarray, out: Path) -> ColmapModel:
    cam_ids: dict[Lens, int] = {}
    cameras, images = {}, {}
    for i, f in enumerate(frames, start=1):
        if f.lens not in cam_ids:
            cam_ids[f.lens] = len(cam_ids) + 1
            try:
                cameras[cam_ids[f.lens]] = camera_from_lens(cam_ids[f.lens], f.lens)
            except UnsupportedLens as e:
                raise DataError(f"{out}: frame {f.name}: {e}") from None
        qvec, tvec = colmap_from_c2w(f.c2w)
        images[i] = ColmapImage(i, cam_ids[f.lens], f.name, qvec, tvec)
    return ColmapModel(cameras, images, xyz, rgb)


def _claim_parents(out: Path) -> Path | None:
    """Create ``out``'s missing parent folders; the topmost one created (to remove on failure) or None."""
    top = None
    for parent in reversed(out.parents):
        if not parent.exists():
            top = parent if top is None else top
    out.parent.mkdir(parents=True, exist_ok=True)
    return top


def refuse_existing(out: Path) -> None:
    """DataError unless ``out`` is missing or an empty folder (captures never overwrite anything)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise data_error(out, "already exists and is not an empty folder; refusing to overwrite it")


@contextlib.contextmanager
def staging_folder(out: Path | str, what: str = "capture") -> Iterator[Path]:
    """Build folder ``out`` atomically: yields a new temporary folder beside it, renamed to ``out`` when the
    block succeeds; on any failure it is removed with the parents created for it, so nothing is left. An
    existing non-empty ``out`` is refused; an OSError becomes a DataError ``out: cannot write WHAT (...)``."""
    out = Path(out)
    refuse_existing(out)
    created, existed = _claim_parents(out), out.exists()
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.mkdir()
        yield tmp
        if out.exists():
            out.rmdir()  # empty (checked above); os.replace cannot replace a folder on every platform
        os.replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if existed and not out.exists():
            out.mkdir()
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(e, OSError):
            raise data_error(out, f"cannot write {what} ({e.strerror or e})") from None
        raise
    with contextlib.suppress(OSError):  # best effort: make the rename durable
        fd = os.open(out.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def write_capture(out: Path | str, frames: list[CapturedFrame], points_xyz: np.ndarray, points_rgb: np.ndarray,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write a capture folder (layout in the module docstring) atomically (`staging_folder`): a failure leaves
    nothing, an existing non-empty ``out`` is refused. ``points_xyz`` [P,3] world units, ``points_rgb`` [P,3]
    uint8. Returns ``out``."""
    out = Path(out)
    refuse_existing(out)
    _check_frames(out, frames)
    xyz, rgb = _check_points(points_xyz, points_rgb, out)
    model = _colmap_model(frames, xyz, rgb, out)
    with staging_folder(out) as tmp:
        (tmp / "images").mkdir()
        for f in frames:
            Image.fromarray(np.ascontiguousarray(f.rgb)).save(tmp / "images" / f.name, format="PNG")
        write_colmap_model(model, tmp / "sparse" / "0", binary=True)
        write_points_ply(tmp / "sparse_pc.ply", xyz, rgb)
        write_transforms_json(tmp / "transforms.json", [f"images/{f.name}" for f in frames],
                              [f.c2w for f in frames], [f.lens for f in frames], "sparse_pc.ply", extra)
    return out
