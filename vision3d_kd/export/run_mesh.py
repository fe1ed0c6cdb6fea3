"""Meshes and point clouds of a run directory (what `v3kd export --format glb|obj|ply|pointcloud` does):
a field's density by marching cubes, or any run (splats included) by TSDF fusion of rendered depth;
colours per vertex or baked into a UV texture."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, RunError
from ..runs import load_run, render_settings_from
from .mesh import (
    Mesh,
    auto_level,
    box_levels,
    box_regions,
    extract_mesh,
    mesh_from_volume,
    surface_colors,
    vertex_normals,
)
from .rig import render_points, rig_cameras
from .texture import bake_texture
from .tsdf import hidden_volume, sample_tsdf, tsdf_fuse
from .tsdf_open3d import open3d_available, tsdf_fuse_open3d

__all__ = ["MeshConfig", "METHODS", "FUSIONS", "mesh_from_run", "point_cloud_from_run"]

METHODS = ("auto", "density", "tsdf")
FUSIONS = ("auto", "torch", "open3d")
Progress = Callable[[str, int, int], None]


@dataclass
class MeshConfig:
    """resolution: lattice points per axis; level: iso-density (density method; None = auto_level);
    min_component: floaters below this fraction of the largest component are dropped; faces: decimation
    target (None keeps all); texture: bake a texture_size² UV texture instead of vertex colours; views:
    rendered views for TSDF fusion; method: density (fields), tsdf, or auto (density for fields, tsdf for
    splats); fusion: the TSDF implementation, open3d, torch or auto (open3d when installed)."""

    resolution: int = 256
    level: float | None = None
    min_component: float = 0.05
    faces: int | None = None
    texture: bool = False
    texture_size: int = 1024
    views: int = 60
    method: str = "auto"
    fusion: str = "auto"
    boxes: tuple | None = None  # density method, automatic level: one level per box [6] (a layout's objects)


class _Stages:
    """Wall-clock seconds of consecutive stages: lap(name) closes the stage that ran since the last lap."""

    def __init__(self) -> None:
        self.spans: dict[str, float] = {}
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.spans[name] = round(now - self.t, 3)
        self.t = now


def _fusion(name: str) -> Callable:
    """The TSDF fusion function named by --fusion (see MeshConfig)."""
    if name not in FUSIONS:
        raise ConfigError(f"--fusion must be one of {', '.join(FUSIONS)}, got {name!r}")
    if name == "torch" or (name == "auto" and not open3d_available()):
        return tsdf_fuse
    if not open3d_available():
        raise ConfigError("--fusion open3d needs open3d: pip install '.[open3d]' (or use --fusion torch)")
    return tsdf_fuse_open3d


def mesh_from_run(run: Path, opts: MeshConfig, device: torch.device | str = "cpu",
                  progress: Progress | None = None) -> Mesh:
    """The coloured (or textured) mesh of a run (see MeshConfig)."""
    if opts.method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {opts.method!r}")
    fuse = _fusion(opts.fusion)
    model, grid, cfg = load_run(run, device)
    splats = getattr(model, "name", "") == "splats"
    method = ("tsdf" if splats else "density") if opts.method == "auto" else opts.method
    if method == "density" and splats:
        raise ConfigError("--method density needs a field run; splats have no density lattice (use tsdf)")
    settings = render_settings_from(cfg)

    def tick(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda i, n: progress(stage, i, n))

    clock = _Stages()
    if method == "density":
        level, regions, region_levels = opts.level, None, None
        rig = rig_cameras(cfg.get("render") or {}, 16, size=64)
        if level is None:
            level = auto_level(model, grid, settings, rig)
        if opts.boxes:  # a layout: each object's surface at its own level, its floaters judged among its parts
            boxes = [list(b) for b in opts.boxes]
            regions = box_regions(model.aabb.cpu(), opts.resolution, boxes)
            if opts.level is None:
                region_levels = [level, *box_levels(model, grid, settings, rig, boxes, level)]
        clock.lap("level")
        solid = hidden_volume(model, grid, settings, rig_cameras(cfg.get("render") or {}, opts.views, size=128),
                              model.aabb, opts.resolution, progress=tick("visibility"))
        clock.lap("visibility")
        mesh = extract_mesh(model, grid, settings, level, opts.resolution, opts.min_component, opts.faces, solid,
                            progress=tick("density"), regions=regions, region_levels=region_levels)
        clock.lap("lattice and marching cubes")
        step = float(((model.aabb[1] - model.aabb[0]) / (opts.resolution - 1)).max())

        def color_fn(p: np.ndarray, n: np.ndarray) -> np.ndarray:
            return surface_colors(model, grid, settings, p, n, offset=2.0 * step)
    else:
        cams = rig_cameras(cfg.get("render") or {}, opts.views)
        tsdf, color = fuse(model, grid, settings, cams, model.aabb, opts.resolution, progress=tick("fuse"))
        clock.lap("fusion")
        mesh = mesh_from_volume(-tsdf, 0.0, model.aabb, opts.min_component, opts.faces)
        clock.lap("marching cubes")
        mesh.info["method"] = "tsdf-open3d" if fuse is not tsdf_fuse else "tsdf"

        def color_fn(p: np.ndarray, n: np.ndarray) -> np.ndarray:
            return sample_tsdf(color, model.aabb, p)
    mesh.info.setdefault("method", method)
    if opts.texture:
        if progress is not None:
            progress("texture", 0, 1)
        mesh = bake_texture(mesh, color_fn, opts.texture_size)
    else:
        mesh.colors = color_fn(mesh.vertices, vertex_normals(mesh.vertices, mesh.faces))
    clock.lap("colours")
    mesh.info["seconds"] = clock.spans
    return mesh


def point_cloud_from_run(run: Path, views: int = 60, max_points: int | None = 1_000_000, seed: int = 0,
                         device: torch.device | str = "cpu",
                         progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points [N,3] (world units) and colours [N,3] in [0,1]: the expected surface point of every opaque
    pixel (opacity > 0.5) of `views` rendered views around the scene, randomly thinned to max_points."""
    model, grid, cfg = load_run(run, device)
    settings = render_settings_from(cfg)
    cams = rig_cameras(cfg.get("render") or {}, views)
    pts, cols = [], []
    for i in range(len(cams)):
        p, c, ok = render_points(model, grid, settings, cams.to(model.aabb.device), i)
        pts.append(p[ok].cpu())
        cols.append(c[ok].cpu())
        if progress is not None:
            progress(i + 1, len(cams))
    points, colors = torch.cat(pts), torch.cat(cols)
    if len(points) == 0:
        raise RunError(f"{run}: no view sees an opaque pixel: the run renders nothing (empty density?)")
    if max_points is not None and len(points) > max_points:
        keep = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:max_points]
        points, colors = points[keep], colors[keep]
    return points.numpy(), colors.numpy()
