"""Meshes from a radiance-field run: density on a lattice over the field's box (chunked, zero in cells
the run's occupancy grid marks empty), marching cubes at an iso-density, floaters dropped (small
connected components) and inner walls (closed cavities) removed, optional decimation; colours come from
the field as seen along each vertex's −normal.

The iso-level defaults to the density where rendered rays' accumulated opacity crosses 0.5 (see
auto_level), so the mesh lies where views of the run see the surface. Coordinates are world units, faces wind
counter-clockwise seen from outside (normals point away from the matter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras, image_rays
from ..errors import ConfigError, RunError
from ..kernels.composite_ref import exclusive_optical_depth
from ..render.occupancy import OccupancyGrid
from ..render.sampling import sample_along_rays
from ..render.volume import RenderConfig, render_rays_chunked

__all__ = ["Mesh", "opacity_crossing", "auto_level", "box_levels", "box_regions", "density_volume",
           "keep_large_components", "vertex_normals", "surface_colors", "decimate", "mesh_from_volume",
           "extract_mesh"]

Progress = Callable[[int, int], None]


@dataclass
class Mesh:
    """Triangle mesh: vertices [V,3] float32 (world units), faces [F,3] int64 (CCW from outside), optional
    vertex colours [V,3] float32 RGB in [0,1], or a texture: uv [V,2] in [0,1] and an [H,W,3] uint8 image."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    info: dict = dc_field(default_factory=dict)


@torch.no_grad()
def opacity_crossing(field, grid: OccupancyGrid | None, settings: RenderConfig, rays_o: Tensor, rays_d: Tensor,
                     chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Per ray [R]: the distance (world units) where the accumulated opacity reaches 0.5 (optical depth
    ln 2; exact within a sample of constant density) and the field's density at that point; inf / nan if
    it never does.
    Unlike the opacity-weighted mean depth, this stays on the surface for soft (semi-transparent) fields."""
    depth = torch.full((len(rays_o),), float("inf"), device=rays_o.device)
    sigma_at = torch.full((len(rays_o),), float("nan"), device=rays_o.device)
    half = math.log(2.0)
    for s in range(0, len(rays_o), chunk):
        o, d = rays_o[s : s + chunk], rays_d[s : s + chunk]
        samples = sample_along_rays(o, d, field.aabb, settings.step_size, grid, settings.near, foreground_only=True)
        if len(samples) == 0:
            continue
        ray_i, t_s = samples.ray_indices, samples.t_starts
        sigma = field.density(samples.points).reshape(-1)
        tau = sigma * samples.deltas
        before = exclusive_optical_depth(tau, ray_i, len(o))
        cross = ((before < half) & (before + tau >= half)).nonzero().flatten()
        local = ray_i[cross]
        rays = local + s
        depth[rays] = t_s[cross] + (half - before[cross]) / sigma[cross].clamp_min(1e-12)
        # the field's density at the crossing point itself, not at its sample's midpoint: on a sharp
        # surface the midpoint already sits on the dense plateau, and an iso-level taken there put the
        # mesh about a sample inside the surface the views see
        sigma_at[rays] = field.density(o[local] + d[local] * depth[rays, None]).reshape(-1)
    return depth, sigma_at


@torch.no_grad()
def auto_level(field, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras) -> float:
    """Iso-density (1/scene-unit) from the field's opacity: the median over rays of `cams` of the density
    where the accumulated opacity crosses 0.5, so the marching-cubes surface passes where rendered views
    see the surface; ln 2 / step_size (one render step half opaque) if no ray gets there."""
    found = [opacity_crossing(field, grid, settings, *image_rays(cams, i))[1] for i in range(len(cams))]
    values = torch.cat(found)
    values = values[torch.isfinite(values)]
    return float(values.median()) if values.numel() else math.log(2.0) / settings.step_size


def box_levels(field, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, boxes: list[list[float]],
               fallback: float, min_rays: int = 16) -> list[float]:
    """One iso-density per box [xmin,ymin,zmin,xmax,ymax,zmax]: the median of the field's density where the
    rays of `cams` reach opacity 0.5 inside that box (as `auto_level`, per object); `fallback` for a box fewer
    than `min_rays` rays reach. Objects made separately (a layout's) can differ in how soft their surfaces
    are, and one level for all of them loses the softest."""
    points, values = [], []
    for i in range(len(cams)):
        o, d = image_rays(cams, i)
        depth, sigma = opacity_crossing(field, grid, settings, o, d)
        hit = torch.isfinite(depth) & torch.isfinite(sigma)
        points.append(o[hit] + d[hit] * depth[hit, None])
        values.append(sigma[hit])
    pts, vals = torch.cat(points).cpu(), torch.cat(values).cpu()
    out = []
    for box in boxes:
        lo, hi = torch.tensor(box[:3]), torch.tensor(box[3:])
        inside = ((pts >= lo) & (pts <= hi)).all(dim=1)
        out.append(float(vals[inside].median()) if int(inside.sum()) >= min_rays else float(fallback))
    return out


def box_regions(aabb: Tensor, resolution: int, boxes: list[list[float]]) -> np.ndarray:
    """Region id [R,R,R] int32 of the lattice points of `aabb`: k + 1 for the smallest of `boxes` holding the
    point (an object resting on a larger one's box belongs to its own), 0 outside every box."""
    axes, _ = _lattice(aabb, resolution)
    grid = np.stack(np.meshgrid(*(a.numpy() for a in axes), indexing="ij"), axis=-1)
    out = np.zeros((resolution,) * 3, dtype=np.int32)
    order = sorted(range(len(boxes)), key=lambda k: -float(np.prod(np.subtract(boxes[k][3:], boxes[k][:3]))))
    for k in order:  # largest first, so smaller boxes overwrite where they overlap
        lo, hi = np.asarray(boxes[k][:3]), np.asarray(boxes[k][3:])
        out[np.all((grid >= lo) & (grid <= hi), axis=-1)] = k + 1
    return out


def _lattice(aabb: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """Per-axis coordinates [R] of the lattice points of `aabb` (corners included), x and the shared step."""
    lo, hi = aabb[0].cpu().double(), aabb[1].cpu().double()
    t = torch.linspace(0.0, 1.0, resolution, dtype=torch.float64)
    return lo[:, None] + (hi - lo)[:, None] * t[None, :], (hi - lo) / (resolution - 1)


@torch.no_grad()
def density_volume(field, grid: OccupancyGrid | None, resolution: int, chunk: int = 1 << 16,
                   progress: Progress | None = None) -> np.ndarray:
    """Density (1/scene-unit) [R,R,R] float32 at the R³ lattice points of the field's box (index order
    x, y, z); points in cells the occupancy grid marks empty are 0 and never evaluated."""
    axes, _ = _lattice(field.aabb, resolution)
    dev = field.aabb.device
    xs, ys, zs = (a.float().to(dev) for a in axes)
    out = torch.zeros(resolution, resolution * resolution)
    yz = torch.stack(torch.meshgrid(ys, zs, indexing="ij"), -1).reshape(-1, 2)
    rows_per_chunk = max(1, chunk // (resolution * resolution))
    for i0 in range(0, resolution, rows_per_chunk):
        x = xs[i0 : i0 + rows_per_chunk]
        pts = torch.cat([x.repeat_interleave(len(yz))[:, None], yz.repeat(len(x), 1)], dim=1)
        keep = grid.occupied(pts) if grid is not None else torch.ones(len(pts), dtype=torch.bool, device=dev)
        vals = torch.zeros(len(pts), device=dev)
        if keep.any():
            vals[keep] = field.density(pts[keep]).float().reshape(-1)
        out[i0 : i0 + len(x)] = vals.reshape(len(x), -1).cpu()
        if progress is not None:
            progress(min(i0 + rows_per_chunk, resolution), resolution)
    vol = out.reshape(resolution, resolution, resolution).numpy()
    if not np.isfinite(vol).all():
        raise RunError("the field's density has NaN/inf values; its weights are broken")
    return vol


def keep_large_components(inside: np.ndarray, min_fraction: float,
                          regions: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Bool volume [R,R,R] -> (the voxels of 26-connected components with at least `min_fraction` of the
    largest component's voxels, number of components dropped). Floaters are small components. With `regions`
    (int [R,R,R], `box_regions`), a component is measured against the largest one of its own region (where
    most of its voxels are): a layout's small or broken-up object is not a floater of a big one."""
    from scipy import ndimage

    labels, n = ndimage.label(inside, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return inside, 0
    sizes = np.bincount(labels.reshape(-1))[1:]
    if regions is None:
        ref = np.full(n, sizes.max())
    else:
        k = int(regions.max()) + 1
        counts = np.bincount(labels.reshape(-1) * k + regions.reshape(-1), minlength=(n + 1) * k).reshape(n + 1, k)
        home = counts[1:].argmax(axis=1)
        largest = np.zeros(k, dtype=sizes.dtype)
        np.maximum.at(largest, home, sizes)
        ref = largest[home]
    keep = np.concatenate([[False], sizes >= min_fraction * ref])
    return keep[labels], int(n - keep.sum())


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals [V,3] (outward for CCW faces); zero-area stars get +z."""
    tri = vertices[faces].astype(np.float64)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(norm > 0, n / np.maximum(norm, 1e-30), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


@torch.no_grad()
def surface_colors(field, grid: OccupancyGrid | None, settings: RenderConfig, points: np.ndarray,
                   normals: np.ndarray, offset: float, chunk: int = 8192) -> np.ndarray:
    """RGB [N,3] in [0,1] a camera sees looking at surface points [N,3] along −normal: rays start `offset`
    (world units) outside and are rendered through the field; colour divided by the ray's opacity."""
    dev = field.aabb.device
    p = torch.as_tensor(points, dtype=torch.float32, device=dev)
    n = torch.as_tensor(normals, dtype=torch.float32, device=dev)
    bg = torch.zeros(len(p), 3, device=dev)
    out = render_rays_chunked(field, p + offset * n, -n, grid, bg, settings, chunk=chunk)
    rgb = out["rgb"] / out["opacity"].clamp_min(1e-3)[:, None]
    return rgb.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation (fast-simplification) to about `target_faces` faces (within 5 %
    unless the mesh cannot collapse further)."""
    import fast_simplification

    v, f = vertices.astype(np.float32), faces.astype(np.int32)
    # gentle passes (aggressiveness 3): the library's default (7) tears thin parts of marching-cubes meshes
    # into spikes (lego at 505k -> 100k faces); a pass may stop short of its target, so repeat
    for _ in range(6):
        if len(f) <= target_faces * 1.05:
            break
        v, f = fast_simplification.simplify(v, f, target_reduction=1.0 - target_faces / len(f), agg=3)
        v, f = np.ascontiguousarray(v, np.float32), np.ascontiguousarray(f, np.int32)
    return v, f.astype(np.int64)


def _check_options(resolution: int, min_component: float, target_faces: int | None) -> None:
    if resolution < 8:
        raise ConfigError(f"--resolution must be >= 8, got {resolution}")
    if not 0 <= min_component <= 1:
        raise ConfigError(f"--min-component must be in [0, 1], got {min_component}")
    if target_faces is not None and target_faces < 4:
        raise ConfigError(f"--faces must be >= 4, got {target_faces}")


def mesh_from_volume(vol: np.ndarray, level: float, aabb: Tensor, min_component: float = 0.05,
                     target_faces: int | None = None, solid: np.ndarray | None = None,
                     regions: np.ndarray | None = None) -> Mesh:
    """Marching cubes of a lattice volume [R,R,R] (corners at aabb's corners; larger values inside) at
    `level` (solid [R,R,R]: voxels forced inside): components under min_component of the largest (of their
    region, with `regions`) dropped, closed cavities filled, then decimated to ~target_faces."""
    import mcubes
    from scipy import ndimage

    inside = vol > level
    if solid is not None:  # e.g. hidden behind the surface from every view
        inside = inside | solid
    kept, dropped = keep_large_components(inside, min_component, regions) if min_component > 0 else (inside, 0)
    floor, ceil = min(float(vol.min()), level - 1.0), max(float(vol.max()), level + 1.0)
    cavity = ndimage.binary_fill_holes(kept) & ~kept  # empty space no view can reach: no inner walls
    vol = np.where(kept | ~inside, vol, floor)  # floaters become empty space
    vol = np.where(cavity | (kept & (vol <= level)), ceil, vol).astype(np.float32)
    # pad with empty space so surfaces touching the box are closed
    verts, faces = mcubes.marching_cubes(np.pad(vol, 1, constant_values=floor), level)
    axes, step = _lattice(aabb, vol.shape[0])
    verts = (axes[:, 0].numpy() + (verts - 1.0) * step.numpy()).astype(np.float32)
    faces = faces.astype(np.int64)
    n_raw = len(faces)
    if target_faces is not None:
        verts, faces = decimate(verts, faces, target_faces)
    return Mesh(verts, faces, info={"level": level, "resolution": vol.shape[0], "components_dropped": dropped,
                                    "faces_before_decimation": n_raw})


def extract_mesh(field, grid: OccupancyGrid | None, settings: RenderConfig, level: float, resolution: int = 256,
                 min_component: float = 0.05, target_faces: int | None = None, solid: np.ndarray | None = None,
                 progress: Progress | None = None, regions: np.ndarray | None = None,
                 region_levels: list[float] | None = None) -> Mesh:
    """Marching-cubes mesh (no colours) of a field's density (see the module docstring). level:
    iso-density (1/scene-unit, e.g. auto_level); min_component: floaters below this fraction of the largest
    component are dropped (0 keeps all); target_faces: decimate to about this many faces. With `regions`
    ([R,R,R], `box_regions`) and `region_levels` (one per region id, `level` for 0 if None): each region's
    surface at its own level, and floaters judged within their region."""
    _check_options(resolution, min_component, target_faces)
    if level is None or not (math.isfinite(level) and level > 0):
        raise ConfigError(f"--level must be a positive density, got {level}")
    vol = density_volume(field, grid, resolution, progress=progress)
    if regions is not None and region_levels is not None:  # density over the local level: the surface at 1
        local = np.asarray(region_levels, dtype=np.float32)[regions]
        vol, level = vol / np.maximum(local, 1e-6), 1.0
    if not (vol > level).any():
        raise RunError(f"the field's density never exceeds the iso-level {level:.3g} (max {vol.max():.3g}): "
                       "no surface to extract (lower --level, or fit longer)")
    return mesh_from_volume(vol, level, field.aabb, min_component, target_faces, solid, regions)
