"""TSDF fusion with open3d's `UniformTSDFVolume` (the optional `open3d` extra): the same inputs and
outputs as `tsdf.tsdf_fuse`, so meshing, floater removal, decimation and texturing stay shared.

open3d fuses z-depth images (distance along the optical axis, OpenCV camera: +z forward, +y down,
pixel centres at integer coordinates) into a cube of R³ voxels with centres origin + (i + ½)·voxel;
the cube is placed so that its voxel centres are the export lattice's points along the box's longest
axis, and the lattice of `aabb` is read from it by trilinear interpolation. Voxels open3d never updated
read −1 (inside) when they lie deep behind the surface in every view that sees them (as in
`tsdf.tsdf_fuse`), else +1."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras, image_rays
from ..errors import ConfigError, RunError
from ..render.occupancy import OccupancyGrid
from ..render.volume import RenderConfig
from .rig import view_surface
from .tsdf import HiddenTracker, lattice_points, sample_tsdf

__all__ = ["open3d_available", "tsdf_fuse_open3d"]


def open3d_available() -> bool:
    """True when `import open3d` works (the optional extra is installed)."""
    try:
        import open3d  # noqa: F401
    except ImportError:
        return False
    return True


def _z_depth(cams: Cameras, i: int, ray_depth: Tensor) -> np.ndarray:
    """Ray distances [H*W] (inf = no surface) -> z-depth image [H,W] float32 (0 = no surface)."""
    _, d = image_rays(cams, i)
    forward = -cams.c2w[i, :3, 2]  # OpenGL cameras look down -z
    z = ray_depth * (d @ forward)
    z = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
    return z.reshape(cams.height, cams.width).numpy().astype(np.float32)


@torch.no_grad()
def tsdf_fuse_open3d(model, grid: OccupancyGrid | None, settings: RenderConfig, cams: Cameras, aabb: Tensor,
                     resolution: int, trunc_voxels: float = 3.0, min_opacity: float = 0.5,
                     progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tsdf [R,R,R] in [−1, 1], colour [R,R,R,3] in [0, 1]) on the lattice of `aabb` (as tsdf_fuse)."""
    import open3d as o3d

    if resolution < 8:
        raise ConfigError(f"--resolution must be >= 8, got {resolution}")
    lo, hi = aabb[0].double().cpu(), aabb[1].double().cpu()
    voxel = float((hi - lo).max()) / (resolution - 1)
    volume = o3d.pipelines.integration.UniformTSDFVolume(
        length=voxel * resolution, resolution=resolution, sdf_trunc=trunc_voxels * voxel,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8,
        origin=(lo - 0.5 * voxel).numpy().reshape(3, 1))
    cams = cams.to("cpu")
    w2c = cams.w2c_opencv().double().numpy()
    behind = HiddenTracker(torch.stack([lo, lo + voxel * (resolution - 1)]).float(), resolution, trunc_voxels * voxel)
    for i in range(len(cams)):
        depth, rgb = view_surface(model, grid, settings, cams, i, min_opacity)
        behind.update(cams, i, depth)
        color = (rgb.reshape(cams.height, cams.width, 3).numpy() * 255.0 + 0.5).astype(np.uint8)
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(color)), o3d.geometry.Image(_z_depth(cams, i, depth)),
            depth_scale=1.0, depth_trunc=1e9, convert_rgb_to_intensity=False)
        intr = o3d.camera.PinholeCameraIntrinsic(cams.width, cams.height, float(cams.fx[i]), float(cams.fy[i]),
                                                 float(cams.cx[i]) - 0.5, float(cams.cy[i]) - 0.5)
        volume.integrate(rgbd, intr, w2c[i])
        if progress is not None:
            progress(i + 1, len(cams))
    tw = np.asarray(volume.extract_volume_tsdf(), dtype=np.float32)  # [R³, 2] (tsdf, weight), x-major
    seen = (tw[:, 1] > 0).astype(np.float32)[:, None]
    hidden = behind.hidden().reshape(-1)  # open3d leaves voxels deep behind every surface unset: inside
    tsdf = np.where(seen[:, 0] > 0, tw[:, 0], np.where(hidden, -1.0, 1.0))[:, None]
    if not (tsdf < 0).any():
        raise RunError("no view sees an opaque surface: nothing to fuse (is the run empty?)")
    color = np.asarray(volume.extract_volume_color(), dtype=np.float32)
    if color.max() > 1.0:  # some open3d versions keep RGB8 colours in 0..255
        color = color / 255.0
    cube = torch.stack([lo, lo + voxel * (resolution - 1)]).float()
    shape = (resolution,) * 3
    # colours interpolated over seen voxels only (unseen ones hold black)
    both = sample_tsdf(np.concatenate([tsdf, color * seen, seen], -1).reshape(*shape, 5), cube,
                         lattice_points(aabb, resolution).numpy())
    rgb = both[:, 1:4] / np.maximum(both[:, 4:5], 1e-6)
    return both[:, 0].reshape(shape), rgb.reshape(*shape, 3)
