"""Pinhole cameras (OpenGL convention), ray generation, orbits and random camera sampling.

Conventions used throughout the package:

- ``c2w`` is camera-to-world, OpenGL: the camera looks down its -Z axis, +Y is up, +X is right.
- Intrinsics ``fx, fy, cx, cy`` are in pixels. Pixel ``(i, j)`` (column ``i``, row ``j``) covers
  ``[i, i+1) x [j, j+1)``, so its centre is at ``(i + 0.5, j + 0.5)``; image y grows downward.
- Ray directions are unit length in the world frame, so ``t`` along a ray is Euclidean distance.
- Angles are degrees in the names that say ``_deg`` and radians elsewhere.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ConfigError

__all__ = [
    "DEFAULT_AABB",
    "Cameras",
    "intrinsics_from_fov",
    "camera_rays",
    "pixel_rays",
    "image_rays",
    "sample_pixels",
    "look_at",
    "orbit_defaults",
    "up_vector",
    "cameras_from_spherical",
    "orbit_cameras",
    "RandomCameraSampler",
]

# The scene box [min corner, max corner] (world units) when data or a config names none.
DEFAULT_AABB: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (-1.5, -1.5, -1.5),
    (1.5, 1.5, 1.5),
)

_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass
class Cameras:
    """A batch of ``N`` pinhole cameras sharing one image size.

    c2w: [N, 4, 4] float32 camera-to-world (OpenGL); fx, fy, cx, cy: [N] pixels;
    width, height: image size in pixels.
    """

    c2w: Tensor
    fx: Tensor
    fy: Tensor
    cx: Tensor
    cy: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.c2w.ndim != 3 or self.c2w.shape[1:] != (4, 4):
            raise ValueError(f"c2w must be [N,4,4], got {tuple(self.c2w.shape)}")
        n = self.c2w.shape[0]
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                value = torch.as_tensor(value, dtype=torch.float32, device=self.c2w.device)
            if value.ndim == 0:
                value = value.expand(n).clone()
            if value.shape != (n,):
                raise ValueError(f"{name} must be [{n}], got {tuple(value.shape)}")
            setattr(self, name, value)
        self.width = int(self.width)
        self.height = int(self.height)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx: int | slice | Tensor) -> Cameras:
        """Select cameras; an int keeps the batch dimension (returns 1 camera)."""
        if not isinstance(idx, (slice, Tensor)):
            idx = operator.index(idx)  # ints, numpy integers
            n = len(self)
            if not -n <= idx < n:
                raise IndexError(f"camera index {idx} out of range for {n} cameras")
            idx = slice(idx % n, idx % n + 1)
        return Cameras(
            self.c2w[idx], self.fx[idx], self.fy[idx], self.cx[idx], self.cy[idx], self.width, self.height
        )

    def to(self, device: torch.device | str) -> Cameras:
        """Copy of the cameras on ``device``."""
        return Cameras(
            self.c2w.to(device),
            self.fx.to(device),
            self.fy.to(device),
            self.cx.to(device),
            self.cy.to(device),
            self.width,
            self.height,
        )

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def K(self) -> Tensor:
        """Intrinsic matrices [N, 3, 3] in pixels (pixel-centre convention above)."""
        k = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.device)
        k[:, 0, 0], k[:, 1, 1] = self.fx, self.fy
        k[:, 0, 2], k[:, 1, 2] = self.cx, self.cy
        k[:, 2, 2] = 1.0
        return k

    @property
    def origins(self) -> Tensor:
        """Camera centres [N, 3] in world units."""
        return self.c2w[:, :3, 3]

    def w2c_opencv(self) -> Tensor:
        """World-to-camera [N, 4, 4] in the OpenCV convention (+Z forward, +Y down), as gsplat wants."""
        flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=self.c2w.dtype, device=self.device))
        return torch.linalg.inv(self.c2w @ flip)


def intrinsics_from_fov(fov_x_rad: float, width: int, height: int) -> tuple[float, float, float, float]:
    """Square-pixel intrinsics ``(fx, fy, cx, cy)`` in pixels from a horizontal field of view in radians."""
    fx = 0.5 * width / math.tan(0.5 * fov_x_rad)
    return fx, fx, 0.5 * width, 0.5 * height


def camera_rays(cams: Cameras, cam_idx: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """World rays through continuous pixel coordinates.

    cam_idx: [M] int64; px, py: [M] pixel coordinates (pixel (i, j) has its centre at (i+0.5, j+0.5)).
    Returns rays_o [M, 3] (camera centres) and rays_d [M, 3] (unit directions, world frame).
    """
    cam_idx = cam_idx.to(cams.device).long()
    px = px.to(cams.device, cams.c2w.dtype)
    py = py.to(cams.device, cams.c2w.dtype)
    # index_select, not advanced indexing: the latter is far slower on a loaded multi-threaded CPU
    x = (px - cams.cx.index_select(0, cam_idx)) / cams.fx.index_select(0, cam_idx)
    y = -(py - cams.cy.index_select(0, cam_idx)) / cams.fy.index_select(0, cam_idx)
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)
    c2w = cams.c2w.index_select(0, cam_idx)
    rays_d = torch.einsum("mij,mj->mi", c2w[:, :3, :3], d_cam)
    rays_d = rays_d / rays_d.norm(dim=-1, keepdim=True)
    return c2w[:, :3, 3].clone(), rays_d


def pixel_rays(cams: Cameras, cam_idx: Tensor, ix: Tensor, iy: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through the centres of integer pixels ``(ix, iy)`` (as returned by :func:`sample_pixels`)."""
    return camera_rays(cams, cam_idx, ix.to(torch.float32) + 0.5, iy.to(torch.float32) + 0.5)


def image_rays(cams: Cameras, i: int) -> tuple[Tensor, Tensor]:
    """All pixel-centre rays of camera ``i``, row-major: rays_o, rays_d [H*W, 3]."""
    h, w = cams.height, cams.width
    iy, ix = torch.meshgrid(
        torch.arange(h, device=cams.device), torch.arange(w, device=cams.device), indexing="ij"
    )
    idx = torch.full((h * w,), i % len(cams), dtype=torch.long, device=cams.device)
    return pixel_rays(cams, idx, ix.reshape(-1), iy.reshape(-1))


def sample_pixels(
    n_images: int, height: int, width: int, n: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` pixels drawn uniformly (with replacement) over all pixels of all images.

    Returns cam_idx, px, py: [n] int64 integer pixel indices (add 0.5 for the pixel centre, or use
    :func:`pixel_rays`). Tensors live on the generator's device.
    """
    total = n_images * height * width
    flat = torch.randint(0, total, (n,), generator=generator, device=generator.device)
    cam_idx = flat // (height * width)
    rem = flat % (height * width)
    return cam_idx, rem % width, rem // width


def up_vector(up: str | Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """World up direction [3] from ``"+z"``-style strings (``[+-]`` and ``x|y|z``) or a tensor."""
    if isinstance(up, Tensor):
        return up.to(dtype) / up.norm()
    s = up.strip().lower()
    if len(s) == 1:
        s = "+" + s
    if len(s) != 2 or s[0] not in "+-" or s[1] not in _AXES:
        raise ConfigError(f"up must be one of +x,-x,+y,-y,+z,-z, got {up!r}")
    v = torch.zeros(3, dtype=dtype)
    v[_AXES[s[1]]] = 1.0 if s[0] == "+" else -1.0
    return v


def look_at(eye: Tensor, target: Tensor, up: str | Tensor = "+z") -> Tensor:
    """OpenGL camera-to-world matrices [..., 4, 4] for cameras at ``eye`` [..., 3] looking at ``target``.

    When the view direction is parallel to ``up`` another up axis is used (no NaNs at the poles).
    """
    eye, target = torch.broadcast_tensors(eye, target)
    up_1 = up_vector(up, eye.dtype).to(eye.device)
    up_v = up_1.expand_as(eye)
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    right = torch.cross(forward, up_v, dim=-1)
    bad = right.norm(dim=-1) < 1e-6
    if bad.any():
        alt = torch.zeros_like(up_1)
        alt[int(up_1.abs().argmin())] = 1.0  # the axis least aligned with up
        right = torch.where(bad[..., None], torch.cross(forward, alt.expand_as(eye), dim=-1), right)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.cross(right, forward, dim=-1)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = true_up
    c2w[..., :3, 2] = -forward
    c2w[..., :3, 3] = eye
    c2w[..., 3, 3] = 1.0
    return c2w


def _horizontal_axes(up: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit axes e1, e2 with e1 x e2 = up (azimuth 0 along e1, 90 degrees along e2)."""
    k = int(up.abs().argmax())
    e1 = torch.zeros(3, dtype=up.dtype)
    e1[(k + 1) % 3] = 1.0
    e2 = torch.cross(up, e1, dim=0)
    return e1, e2


def cameras_from_spherical(
    elevation_deg: Tensor,
    azimuth_deg: Tensor,
    radius: Tensor,
    fov_y_deg: Tensor,
    width: int,
    height: int,
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    up: str | Tensor = "+z",
) -> Cameras:
    """Cameras on spheres around ``center`` looking at it; all arguments [N] (degrees, scene units).

    Azimuth 0 lies along the first horizontal axis (+x for up=+z, +z for up=+y), growing
    counter-clockwise seen from above; elevation is measured from the horizontal plane towards ``up``.
    """
    elev = torch.deg2rad(elevation_deg.float())
    azim = torch.deg2rad(azimuth_deg.float())
    up_v = up_vector(up)
    e1, e2 = _horizontal_axes(up_v)
    r = radius.float()[:, None]
    direction = (
        torch.cos(elev)[:, None] * (torch.cos(azim)[:, None] * e1 + torch.sin(azim)[:, None] * e2)
        + torch.sin(elev)[:, None] * up_v
    )
    c = torch.tensor(center, dtype=torch.float32)
    c2w = look_at(c + r * direction, c.expand(len(elev), 3), up_v)
    fy = 0.5 * height / torch.tan(0.5 * torch.deg2rad(fov_y_deg.float()))
    n = len(elev)
    return Cameras(
        c2w, fy.clone(), fy.clone(), torch.full((n,), 0.5 * width), torch.full((n,), 0.5 * height),
        width, height,
    )


def orbit_cameras(
    n: int,
    radius: float,
    elevation_deg: float,
    fov_y_deg: float,
    width: int,
    height: int,
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    up: str = "+z",
    azimuth_offset_deg: float = 0.0,
) -> Cameras:
    """``n`` cameras evenly spaced in azimuth (from ``azimuth_offset_deg``) looking at ``center``."""
    azim = azimuth_offset_deg + torch.arange(n, dtype=torch.float32) * (360.0 / max(n, 1))
    full = torch.full((n,), 1.0)
    return cameras_from_spherical(
        full * elevation_deg, azim, full * radius, full * fov_y_deg, width, height, center, up
    )


def _check_range(name: str, rng: tuple[float, float], lo: float | None = None, hi: float | None = None,
                 open_bounds: bool = False) -> tuple[float, float]:
    if len(rng) != 2:
        raise ConfigError(f"{name} must be a (low, high) pair, got {rng!r}")
    a, b = float(rng[0]), float(rng[1])
    if not (math.isfinite(a) and math.isfinite(b)) or a > b:
        raise ConfigError(f"{name} must satisfy low <= high, got ({a}, {b})")
    if lo is not None and (a <= lo if open_bounds else a < lo):
        raise ConfigError(f"{name} low {a} is outside the allowed range ({lo}, {hi})")
    if hi is not None and (b >= hi if open_bounds else b > hi):
        raise ConfigError(f"{name} high {b} is outside the allowed range ({lo}, {hi})")
    return a, b


@dataclass
class RandomCameraSampler:
    """Random cameras looking at ``center``: elevation, azimuth, radius and vertical fov are each
    drawn uniformly from their (low, high) range (degrees, scene units).

    Elevation is uniform in angle, not in area, as in text-to-3D practice.
    """

    elevation_deg: tuple[float, float] = (-10.0, 60.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    radius: tuple[float, float] = (3.0, 4.0)
    fov_y_deg: tuple[float, float] = (40.0, 70.0)
    width: int = 64
    height: int = 64
    up: str = "+z"
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        self.elevation_deg = _check_range("elevation_deg", self.elevation_deg, -90.0, 90.0)
        self.azimuth_deg = _check_range("azimuth_deg", self.azimuth_deg)
        self.radius = _check_range("radius", self.radius, 0.0, None, open_bounds=True)
        self.fov_y_deg = _check_range("fov_y_deg", self.fov_y_deg, 0.0, 180.0, open_bounds=True)
        if self.width < 1 or self.height < 1:
            raise ConfigError(f"image size must be positive, got {self.width}x{self.height}")
        up_vector(self.up)

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Draw ``n`` camera parameters: dict of [n] tensors elevation_deg, azimuth_deg, radius, fov_y_deg."""
        out = {}
        for key in ("elevation_deg", "azimuth_deg", "radius", "fov_y_deg"):
            lo, hi = getattr(self, key)
            u = torch.rand(n, generator=generator, device=generator.device).cpu()
            out[key] = lo + (hi - lo) * u
        return out

    def cameras(self, params: dict[str, Tensor]) -> Cameras:
        """Cameras for parameters from :meth:`sample_params`."""
        return cameras_from_spherical(
            params["elevation_deg"], params["azimuth_deg"], params["radius"], params["fov_y_deg"],
            self.width, self.height, self.center, self.up,
        )

    def sample(self, n: int, generator: torch.Generator) -> Cameras:
        """``n`` random cameras (on CPU)."""
        return self.cameras(self.sample_params(n, generator))


def orbit_defaults(cams: Cameras) -> dict[str, float]:
    """Turntable settings that match a training rig: mean camera distance from the origin, vertical
    field of view, mean elevation and [min, max] elevation (degrees above the z = 0 plane), image size."""
    pos = cams.c2w[:, :3, 3]
    radius = float(pos.norm(dim=-1).mean())
    fov_y = 2 * math.degrees(math.atan(cams.height / (2 * float(cams.fy[0]))))
    elevations = torch.rad2deg(torch.asin((pos[:, 2] / pos.norm(dim=-1)).clamp(-1, 1)))
    return {
        "radius": radius,
        "fov_y_deg": fov_y,
        "elevation_deg": float(elevations.mean()),
        "elevation_range_deg": [float(elevations.min()), float(elevations.max())],
        "width": cams.width,
        "height": cams.height,
    }
