"""Cameras: pinhole rays by hand, orbits, random sampling ranges, pixel sampling."""

from __future__ import annotations

import math

import pytest
import torch

from vision3d_kd.cameras import (
    Cameras,
    RandomCameraSampler,
    camera_rays,
    image_rays,
    intrinsics_from_fov,
    look_at,
    orbit_cameras,
    pixel_rays,
    sample_pixels,
)
from vision3d_kd.errors import ConfigError


def _identity_cam() -> Cameras:
    one = torch.ones(1)
    return Cameras(torch.eye(4)[None], 2 * one, 2 * one, 1.5 * one, 1.5 * one, 3, 3)


def test_pinhole_rays_by_hand() -> None:
    cams = _identity_cam()
    o, d = image_rays(cams, 0)
    assert o.shape == d.shape == (9, 3)
    assert torch.allclose(o, torch.zeros(9, 3))
    # centre pixel (1, 1): centre at (1.5, 1.5) = principal point -> straight down -Z
    assert torch.allclose(d[4], torch.tensor([0.0, 0.0, -1.0]))
    # top-left pixel (0, 0): x = (0.5-1.5)/2 = -0.5, y = -(0.5-1.5)/2 = +0.5 (image y points down)
    expected = torch.tensor([-0.5, 0.5, -1.0]) / math.sqrt(1.5)
    assert torch.allclose(d[0], expected, atol=1e-6)
    # bottom-right pixel (2, 2), row-major index 8
    assert torch.allclose(d[8], torch.tensor([0.5, -0.5, -1.0]) / math.sqrt(1.5), atol=1e-6)
    assert torch.allclose(d.norm(dim=-1), torch.ones(9))


def test_rays_follow_c2w() -> None:
    c2w = look_at(torch.tensor([0.0, -3.0, 0.0]), torch.zeros(3), "+z")
    one = torch.ones(1)
    cams = Cameras(c2w[None], 10 * one, 10 * one, 5 * one, 5 * one, 10, 10)
    o, d = camera_rays(cams, torch.zeros(1, dtype=torch.long), torch.tensor([5.0]), torch.tensor([5.0]))
    assert torch.allclose(o[0], torch.tensor([0.0, -3.0, 0.0]))
    assert torch.allclose(d[0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    # a pixel above the centre looks upward (+z is up in the world)
    _, d_up = camera_rays(cams, torch.zeros(1, dtype=torch.long), torch.tensor([5.0]), torch.tensor([2.0]))
    assert d_up[0, 2] > 0


def test_intrinsics_from_fov() -> None:
    fx, fy, cx, cy = intrinsics_from_fov(math.radians(90.0), 200, 100)
    assert fx == pytest.approx(100.0) and fy == fx and (cx, cy) == (100.0, 50.0)


def test_orbit_cameras_look_at_centre() -> None:
    center = (0.2, -0.1, 0.3)
    cams = orbit_cameras(12, 4.0, 30.0, 40.0, 32, 24, center=center, up="+z")
    assert len(cams) == 12 and cams.c2w.shape == (12, 4, 4)
    c = torch.tensor(center)
    assert torch.allclose((cams.origins - c).norm(dim=-1), torch.full((12,), 4.0), atol=1e-5)
    # the principal ray (-Z axis) points at the centre
    forward = -cams.c2w[:, :3, 2]
    to_center = (c - cams.origins) / (c - cams.origins).norm(dim=-1, keepdim=True)
    assert torch.allclose(forward, to_center, atol=1e-5)
    # rotations are orthonormal, elevation is 30 degrees
    rot = cams.c2w[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(12, 3, 3), atol=1e-5)
    elev = torch.rad2deg(torch.asin((cams.origins[:, 2] - c[2]) / 4.0))
    assert torch.allclose(elev, torch.full((12,), 30.0), atol=1e-3)
    # +Y of the camera has a positive world-z component (upright)
    assert (cams.c2w[:, 2, 1] > 0).all()
    # fov_y 40 deg -> fy = 12 / tan(20 deg)
    assert torch.allclose(cams.fy, torch.full((12,), 12 / math.tan(math.radians(20))))


def test_look_at_at_the_pole_has_no_nan() -> None:
    c2w = look_at(torch.tensor([0.0, 0.0, 5.0]), torch.zeros(3), "+z")
    assert torch.isfinite(c2w).all()
    assert torch.allclose(-c2w[:3, 2], torch.tensor([0.0, 0.0, -1.0]))


def test_random_sampler_respects_ranges() -> None:
    s = RandomCameraSampler(
        elevation_deg=(10.0, 40.0), azimuth_deg=(-90.0, 90.0), radius=(2.0, 3.0), fov_y_deg=(30.0, 50.0),
        width=16, height=8,
    )
    gen = torch.Generator().manual_seed(0)
    params = s.sample_params(500, gen)
    cams = s.cameras(params)
    r = cams.origins.norm(dim=-1)
    assert r.min() >= 2.0 - 1e-5 and r.max() <= 3.0 + 1e-5
    elev = torch.rad2deg(torch.asin(cams.origins[:, 2] / r))
    assert elev.min() >= 10.0 - 1e-3 and elev.max() <= 40.0 + 1e-3
    azim = torch.rad2deg(torch.atan2(cams.origins[:, 1], cams.origins[:, 0]))
    assert azim.min() >= -90.0 - 1e-3 and azim.max() <= 90.0 + 1e-3
    fov = torch.rad2deg(2 * torch.atan(0.5 * 8 / cams.fy))
    assert fov.min() >= 30.0 - 1e-3 and fov.max() <= 50.0 + 1e-3
    assert elev.max() - elev.min() > 20  # actually spread out
    assert s.sample(3, gen).width == 16


@pytest.mark.parametrize(
    "kwargs",
    [{"elevation_deg": (50.0, 10.0)}, {"fov_y_deg": (0.0, 40.0)}, {"fov_y_deg": (40.0, 180.0)},
     {"radius": (-1.0, 2.0)}, {"up": "w"}],
)
def test_random_sampler_rejects_bad_ranges(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        RandomCameraSampler(**kwargs)


def test_sample_pixels_uniform_over_images() -> None:
    gen = torch.Generator().manual_seed(1)
    cam_idx, px, py = sample_pixels(3, 4, 5, 6000, gen)
    assert cam_idx.dtype == torch.long and px.dtype == torch.long
    assert cam_idx.min() == 0 and cam_idx.max() == 2
    assert px.min() == 0 and px.max() == 4 and py.min() == 0 and py.max() == 3
    counts = torch.bincount(cam_idx, minlength=3).float()
    assert (counts / 6000 - 1 / 3).abs().max() < 0.05


def test_indexing_and_pixel_rays() -> None:
    cams = orbit_cameras(4, 3.0, 0.0, 60.0, 8, 6)
    assert len(cams[1]) == 1 and len(cams[-1]) == 1 and len(cams[1:3]) == 2
    assert torch.equal(cams[torch.tensor([3, 0])].c2w[1], cams.c2w[0])
    o, d = image_rays(cams, 2)
    idx = torch.full((48,), 2, dtype=torch.long)
    iy, ix = torch.meshgrid(torch.arange(6), torch.arange(8), indexing="ij")
    o2, d2 = pixel_rays(cams, idx, ix.reshape(-1), iy.reshape(-1))
    assert torch.allclose(d, d2) and torch.allclose(o, o2)
    assert cams.K.shape == (4, 3, 3) and cams.to("cpu").width == 8


def test_opencv_projection_matches_rays() -> None:
    cams = orbit_cameras(3, 4.0, 20.0, 45.0, 20, 10)
    idx = torch.tensor([0, 1, 2])
    px, py = torch.tensor([3.5, 10.0, 17.25]), torch.tensor([2.5, 5.0, 8.75])
    o, d = camera_rays(cams, idx, px, py)
    x = o + 2.5 * d  # points on the rays, projected back with K and the OpenCV w2c
    xc = (cams.w2c_opencv() @ torch.cat([x, torch.ones(3, 1)], -1)[..., None])[:, :3, 0]
    uv = (cams.K @ xc[..., None])[:, :, 0]
    assert torch.allclose(uv[:, 0] / uv[:, 2], px, atol=1e-4)
    assert torch.allclose(uv[:, 1] / uv[:, 2], py, atol=1e-4)
