"""Procedural scenes with ground truth: sphere-traced SDF renders written as Blender folders.

Shading is Lambertian with one fixed directional light plus ambient, so the radiance is
view-independent and a radiance field can fit it exactly. Depth is the Euclidean ray distance of
the pixel-centre ray (inf on a miss), normals are unit world-frame SDF gradients (zero on a miss);
colour and alpha are supersampled (s x s rays per pixel) so edges carry fractional alpha.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..cameras import Cameras, RandomCameraSampler, camera_rays, cameras_from_spherical
from ..errors import ConfigError, DataError
from ..kernels.march_ref import ray_aabb
from .sdf import SCENE_NAMES, SDFScene, load_scene_sdf, scene_sdf

__all__ = [
    "Shading",
    "sphere_trace",
    "render_sdf",
    "write_scene",
    "scene_cameras",
    "scene_sdf",
    "load_scene_sdf",
    "SCENE_NAMES",
]


@dataclass
class Shading:
    """Lambertian shading: ``albedo * (ambient + (1 - ambient) * max(0, n . light))``.

    light_dir: world-frame direction towards the light (normalised on use).
    """

    light_dir: tuple[float, float, float] = (0.4, 0.3, 0.85)
    ambient: float = 0.35

    def shade(self, albedo: Tensor, normal: Tensor) -> Tensor:
        """Radiance [M, 3] in [0, 1] from albedo [M, 3] and unit normals [M, 3]."""
        light = torch.tensor(self.light_dir, dtype=normal.dtype, device=normal.device)
        light = light / light.norm()
        lambert = (normal @ light).clamp_min(0.0)[:, None]
        return albedo * (self.ambient + (1.0 - self.ambient) * lambert)


def sphere_trace(
    scene: SDFScene, rays_o: Tensor, rays_d: Tensor, max_steps: int = 200, eps: float = 1e-4
) -> tuple[Tensor, Tensor]:
    """First surface hit along unit rays rays_o, rays_d [M, 3] (world).

    Returns t [M] ray distance (inf on a miss) and hit [M] bool; at a hit |sdf(o + t d)| < eps.
    """
    t, t_far, in_box = ray_aabb(rays_o, rays_d, torch.tensor(scene.aabb, dtype=rays_o.dtype))
    hit = torch.zeros(len(t), dtype=torch.bool)
    # index_select/index_copy_ rather than x[idx]: advanced indexing is very slow on a busy CPU
    active = torch.nonzero(in_box).flatten()
    for _ in range(max_steps):
        if active.numel() == 0:
            break
        ta = t.index_select(0, active)
        x = rays_o.index_select(0, active) + ta[:, None] * rays_d.index_select(0, active)
        dist = scene.sdf(x)
        done = dist.abs() < eps
        hit.index_fill_(0, active.index_select(0, torch.nonzero(done).flatten()), True)
        ta = ta + torch.where(done, 0.0, dist)
        t.index_copy_(0, active, ta)
        keep = ~done & (ta <= t_far.index_select(0, active))
        active = active.index_select(0, torch.nonzero(keep).flatten())
    t = torch.where(hit, t, float("inf"))
    return t, hit


def _subpixel_offsets(s: int) -> Tensor:
    """Offsets [s*s, 2] inside a unit pixel, on a regular s x s grid (centre for s = 1)."""
    g = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    oy, ox = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([ox.reshape(-1), oy.reshape(-1)], dim=-1)


def render_sdf(
    scene: SDFScene, cams: Cameras, supersample: int = 2, shading: Shading | None = None
) -> dict[str, Tensor]:
    """Render all cameras: rgb [N,H,W,3] straight colour, alpha [N,H,W,1], depth [N,H,W] ray distance
    (inf on a miss) and normal [N,H,W,3] world frame (zero on a miss), from pixel-centre rays.
    """
    shading = shading or Shading()
    n, h, w = len(cams), cams.height, cams.width
    iy, ix = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cam_idx = torch.arange(n).repeat_interleave(h * w)
    px = ix.reshape(-1).repeat(n).float()
    py = iy.reshape(-1).repeat(n).float()

    def trace(off_x: float, off_y: float) -> tuple[Tensor, Tensor, Tensor]:
        o, d = camera_rays(cams, cam_idx, px + off_x, py + off_y)
        t, hit = sphere_trace(scene, o, d)
        idx = torch.nonzero(hit).flatten()
        x = o.index_select(0, idx) + t.index_select(0, idx)[:, None] * d.index_select(0, idx)
        return t, idx, x

    t_c, hit_c, x_c = trace(0.5, 0.5)
    normal = torch.zeros(n * h * w, 3)
    normal.index_copy_(0, hit_c, scene.normal(x_c))
    premult = torch.zeros(n * h * w, 3)
    coverage = torch.zeros(n * h * w)
    offsets = _subpixel_offsets(supersample)
    for ox, oy in offsets.tolist():
        if supersample == 1:
            hit, x, nrm = hit_c, x_c, normal.index_select(0, hit_c)
        else:
            _, hit, x = trace(ox, oy)
            nrm = scene.normal(x)
        premult.index_add_(0, hit, shading.shade(scene.color(x), nrm))
        coverage.index_add_(0, hit, torch.ones(len(hit)))
    alpha = coverage / len(offsets)
    rgb = torch.where(coverage[:, None] > 0, premult / coverage.clamp_min(1.0)[:, None], 0.0)
    return {
        "rgb": rgb.clamp(0.0, 1.0).reshape(n, h, w, 3),
        "alpha": alpha.reshape(n, h, w, 1),
        "depth": t_c.reshape(n, h, w),
        "normal": normal.reshape(n, h, w, 3),
    }


def scene_cameras(
    n_train: int, n_test: int, size: int, radius: float, fov_deg: float, seed: int
) -> tuple[Cameras, Cameras]:
    """Train cameras at random on a sphere of ``radius`` (elevation -30..80 deg, any azimuth) and
    held-out test cameras on an orbit alternating 20 / 50 deg elevation (z up, looking at the origin).
    """
    gen = torch.Generator().manual_seed(seed)
    sampler = RandomCameraSampler(
        elevation_deg=(-30.0, 80.0), azimuth_deg=(0.0, 360.0), radius=(radius, radius),
        fov_y_deg=(fov_deg, fov_deg), width=size, height=size, up="+z",
    )
    train = sampler.sample(n_train, gen)
    k = torch.arange(n_test, dtype=torch.float32)
    elev = torch.where(k % 2 == 0, 20.0, 50.0)
    azim = 180.0 / max(n_test, 1) + k * 360.0 / max(n_test, 1)
    full = torch.ones(n_test)
    test = cameras_from_spherical(elev, azim, full * radius, full * fov_deg, size, size, up="+z")
    return train, test


def _check_args(n_train: int, n_test: int, size: int, radius: float, fov_deg: float, supersample: int) -> None:
    if n_train < 1 or n_test < 1:
        raise ConfigError(f"need at least one train and one test view, got {n_train} and {n_test}")
    if supersample < 1:
        raise ConfigError(f"supersample must be >= 1, got {supersample}")
    if size < 1:
        raise ConfigError(f"image size must be positive, got {size}")
    if not (math.isfinite(radius) and radius > 0):
        raise ConfigError(f"radius must be a positive distance, got {radius}")
    if not 0.0 < fov_deg < 180.0:
        raise ConfigError(f"fov must be in (0, 180) degrees, got {fov_deg}")


def _write_split(
    folder: Path, split: str, scene: SDFScene, cams: Cameras, fov_rad: float, supersample: int,
    batch: int, tick: Callable[[int], None],
) -> None:
    (folder / split).mkdir()
    frames = []
    for start in range(0, len(cams), batch):
        sub = cams[start : start + batch]
        out = render_sdf(scene, sub, supersample)
        rgba = torch.cat([out["rgb"], out["alpha"]], dim=-1)
        rgba_u8 = (rgba * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
        for j in range(len(sub)):
            i = start + j
            stem = folder / split / f"r_{i}"
            Image.fromarray(rgba_u8[j], mode="RGBA").save(stem.with_suffix(".png"))
            np.save(stem.with_name(f"r_{i}_depth.npy"), out["depth"][j].numpy().astype(np.float32))
            np.save(stem.with_name(f"r_{i}_normal.npy"), out["normal"][j].numpy().astype(np.float32))
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": sub.c2w[j].tolist()})
        tick(len(sub))
    meta = {
        "camera_angle_x": fov_rad,
        "aabb": [list(scene.aabb[0]), list(scene.aabb[1])],
        "scene": scene.name,
        "frames": frames,
    }
    (folder / f"transforms_{split}.json").write_text(json.dumps(meta, indent=1))


def write_scene(
    name: str | SDFScene,
    out_dir: str | Path,
    n_train: int = 50,
    n_test: int = 10,
    size: int = 64,
    radius: float = 4.0,
    fov_deg: float = 40.0,
    seed: int = 0,
    supersample: int = 2,
    progress: Callable[[int, int], None] | None = None,
    num_threads: int | None = 1,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Render scene ``name`` (a named scene or an SDFScene) into a new Blender-format folder ``out_dir`` and
    return its path.

    Writes transforms_{train,test}.json (camera_angle_x, aabb), {train,test}/r_i.png (RGBA),
    r_i_depth.npy (float32 ray distance, inf on a miss), r_i_normal.npy (float32 world normals)
    and scene.json (the SDF). ``fov_deg`` is both the horizontal and vertical field of view.
    The folder is built beside ``out_dir`` and renamed into place, so a failure leaves nothing;
    an existing non-empty ``out_dir`` is refused. ``progress(done, total)`` is called per batch.
    ``num_threads`` caps torch's CPU threads while rendering (restored afterwards; None leaves
    them): the many small ops of sphere tracing gain nothing from threads and slow down badly
    when other processes compete for the cores. ``extra_files``: {name: text} written beside them.
    """
    scene = scene_sdf(name) if isinstance(name, str) else name  # an unknown name: ConfigError, first
    _check_args(n_train, n_test, size, radius, fov_deg, supersample)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; refusing to overwrite")
    train, test = scene_cameras(n_train, n_test, size, radius, fov_deg, seed)
    total, done = n_train + n_test, 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, total)

    batch = max(1, 65536 // (size * size))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as e:
        raise DataError(f"{out}: cannot create the output folder ({e})") from None
    old_threads = torch.get_num_threads()
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        fov_rad = math.radians(fov_deg)
        _write_split(tmp, "train", scene, train, fov_rad, supersample, batch, tick)
        _write_split(tmp, "test", scene, test, fov_rad, supersample, batch, tick)
        (tmp / "scene.json").write_text(json.dumps(scene.to_dict(), indent=1))
        for rel, text in (extra_files or {}).items():
            (tmp / rel).write_text(text)
        tmp.chmod(0o755)
        os.rename(tmp, out)  # atomic; replaces an empty directory
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{out}: cannot write the scene ({e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(old_threads)
    return out
