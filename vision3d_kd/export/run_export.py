"""Export a run to a file (what `v3kd export` does): a coloured mesh (GLB/OBJ/PLY, optionally with a PNG
preview), a point cloud (PLY) or the Gaussians of a splats run (splat formats)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..cameras import Cameras, orbit_cameras
from ..checkpoint import atomic_write, read_config
from ..errors import ConfigError
from ..runs import capture_transform
from .frame import check_frame, mesh_to_capture, points_to_capture
from .mesh import Mesh
from .mesh_io import mesh_rotation, write_mesh, write_point_cloud
from .raster import render_mesh
from .run_mesh import MeshConfig, mesh_from_run, point_cloud_from_run
from .splats import SPLAT_FORMATS, export_splats

__all__ = ["FORMATS", "MESH_FORMATS", "SPLAT_FORMATS", "export_run", "run_view", "write_mesh_preview"]

MESH_FORMATS = ("glb", "obj", "ply")
FORMATS = (*MESH_FORMATS, "pointcloud", *SPLAT_FORMATS)
Progress = Callable[[str, int, int], None]


def _check_preview_size(size: int) -> None:
    if size < 8:
        raise ConfigError(f"--preview-size must be >= 8, got {size}")


def run_view(run: Path, size: int, azimuth_deg: float = 30.0) -> Cameras:
    """One size x size camera looking at the centre from `azimuth_deg` at the run's mean training elevation,
    camera distance and field of view (its config.json `render` section)."""
    r = read_config(run).get("render") or {}
    return orbit_cameras(1, float(r.get("radius", 4.0)), float(r.get("elevation_deg", 30.0)),
                         float(r.get("fov_y_deg", 40.0)), size, size, azimuth_offset_deg=azimuth_deg)


def write_mesh_preview(run: Path, mesh: Mesh, path: Path, size: int = 512) -> Path:
    """Write a `size`² PNG of `mesh` (world units of `run`) on white, seen from 30° azimuth at the run's mean
    training elevation, camera distance and field of view (its config.json `render` section); atomic."""
    _check_preview_size(size)
    cams = run_view(run, size)
    buf = io.BytesIO()
    Image.fromarray(render_mesh(mesh, cams, 0)).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return Path(path)


def _transform(run: Path) -> np.ndarray:
    return capture_transform(read_config(run)).numpy()


def export_run(run: Path, fmt: str, out: Path, mesh_cfg: MeshConfig | None = None, *, max_points: int = 1_000_000,
               spz_version: int = 2, up: str | None = None, preview: Path | None = None, preview_size: int = 512,
               device: torch.device | str = "cpu", progress: Progress | None = None,
               frame: str = "normalized") -> dict[str, Any]:
    """Export run `run` as `fmt` (one of FORMATS) to `out`, atomically.

    Meshes follow `mesh_cfg` (default MeshConfig()) and, with `preview`, also get a PNG of the mesh
    (`write_mesh_preview`); pointcloud keeps at most `max_points` surface points of `mesh_cfg.views` views;
    splat formats need a splats run (`spz_version`: see `export_splats`). `up`: the file's axis that
    points up (see `data.axes`; default per format: glb +y, obj/ply/pointcloud +z, 3dgs-ply/splat -y,
    spz +y). `progress(stage, i, n)` follows the slow stages. `frame`: normalized (the run's model frame)
    or capture (the frame of the capture it was fitted on, before pose normalisation; the same for data
    that was not normalised).
    Returns {"format", "files"} plus "gaussians" (splats), "points" (pointcloud) or
    "vertices", "faces", "method" and "stages" (meshes: seconds per stage)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    check_frame(frame)
    if fmt in SPLAT_FORMATS:
        model = export_splats(run, fmt, out, spz_version, up, frame)
        return {"format": fmt, "files": [out], "gaussians": model.n}
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: output directory {out.parent} does not exist")
    if preview is not None:
        if Path(preview).suffix.lower() != ".png":
            raise ConfigError(f"--preview {preview}: must be a .png file")
        _check_preview_size(preview_size)
    mesh_rotation("ply" if fmt == "pointcloud" else fmt, up)  # a bad axis fails before the slow part
    cfg = mesh_cfg or MeshConfig()
    if fmt == "pointcloud":
        tick = None if progress is None else (lambda i, n: progress("render views", i, n))
        pts, cols = point_cloud_from_run(run, cfg.views, max_points, device=device, progress=tick)
        if frame == "capture":
            pts = points_to_capture(np.asarray(pts, dtype=np.float64), _transform(run)).astype(np.float32)
        write_point_cloud(pts, cols, out, up)
        return {"format": fmt, "files": [out], "points": len(pts)}
    mesh = mesh_from_run(run, cfg, device, progress)
    if frame == "capture":
        mesh = mesh_to_capture(mesh, _transform(run))
    t0 = time.perf_counter()
    files = write_mesh(mesh, out, fmt, up)
    stages = {**mesh.info.get("seconds", {}), "write": round(time.perf_counter() - t0, 3)}
    if preview is not None:
        files.append(write_mesh_preview(run, mesh, preview, preview_size))
    return {"format": fmt, "files": files, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
            "method": mesh.info["method"], "stages": stages}
