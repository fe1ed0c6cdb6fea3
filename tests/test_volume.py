"""Ray-box intersection, marching, occupancy grid and full volume rendering against analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

from vision3d_kd.fields.base import Field
from vision3d_kd.kernels.march import march_rays
from vision3d_kd.kernels.march_ref import ray_aabb
from vision3d_kd.render.occupancy import OccupancyGrid
from vision3d_kd.render.volume import RenderConfig, render_rays

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


class ConstantField(Field):
    """Constant density inside a sphere of radius `r` (or everywhere when r is None), constant colour."""

    name = "constant"

    def __init__(self, sigma: float, rgb=(0.2, 0.4, 0.6), r: float | None = None) -> None:
        super().__init__(aabb=BOX.tolist())
        self.sigma, self.r = sigma, r
        self.rgb = torch.nn.Parameter(torch.tensor(rgb))

    def encode(self, x):
        return x

    def density_head(self, x):
        s = torch.full((x.shape[0],), self.sigma)
        if self.r is not None:
            s = torch.where(x.norm(dim=-1) < self.r, s, torch.zeros_like(s))
        return s, x

    def color_from_dirs(self, geo, d_enc):
        return self.rgb.expand(geo.shape[0], 3)


def test_ray_aabb_hand_case():
    o = torch.tensor([[0.0, 0.0, 5.0], [3.0, 3.0, 5.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    tn, tf, hit = ray_aabb(o, d, BOX)
    assert hit.tolist() == [True, False, True]
    assert torch.allclose(tn[0], torch.tensor(4.0)) and torch.allclose(tf[0], torch.tensor(6.0))
    assert tn[2] == 0.0 and torch.allclose(tf[2], torch.tensor(1.0))  # origin inside the box


def test_a_zero_direction_ray_misses_instead_of_marching_for_ever():
    """Regression: a zero normal (cone apex) used as a ray direction hung the fused marcher."""
    from vision3d_kd.kernels.march_ref import march_rays_ref

    o = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    assert ray_aabb(o, d, BOX)[2].tolist() == [False, True]
    for march in (march_rays, march_rays_ref):
        ri, ts, te = march(o, d, BOX, step_size=0.1)
        assert ri.tolist() == [1] * 20


def test_march_covers_the_chord_without_grid():
    o = torch.tensor([[0.0, 0.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, -1.0]])
    ri, ts, te = march_rays(o, d, BOX, step_size=0.1)
    assert ri.numel() == 20
    assert torch.allclose((te - ts).sum(), torch.tensor(2.0), atol=1e-5)
    assert torch.all(ts[1:] >= ts[:-1])


def test_constant_slab_opacity_is_analytic():
    """A constant-density box: opacity = 1 - exp(-sigma * L) with L the chord length."""
    sigma = 0.7
    field = ConstantField(sigma)
    o = torch.tensor([[0.0, 0.0, 5.0], [0.3, -0.2, 5.0], [0.0, 0.0, 0.0]])
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0], [0.1, 0.05, -1.0], [1.0, 0.0, 0.0]]), dim=-1)
    _, tf, _ = ray_aabb(o, d, BOX)
    tn, _, _ = ray_aabb(o, d, BOX)
    chord = tf - tn
    out = render_rays(field, o, d, None, torch.zeros(3, 3), RenderConfig(step_size=0.013, prune=False))
    expected = 1 - torch.exp(-sigma * chord)
    assert torch.allclose(out["opacity"], expected, atol=1e-5)
    assert torch.allclose(out["rgb"], expected[:, None] * field.rgb.detach(), atol=1e-5)


def test_occupancy_grid_finds_a_sphere_and_rendering_is_unchanged():
    field = ConstantField(50.0, r=0.5)
    grid = OccupancyGrid(BOX, resolution=32)
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        grid.update(field.density, threshold=1.0, warmup=i < 2, generator=g)
    centers = (torch.stack(torch.meshgrid(*[torch.arange(32)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / 16 - 1
    r = centers.norm(dim=-1)
    occ = grid.occupied(centers)
    assert occ[r < 0.4].all() and not occ[r > 0.6 + math.sqrt(3) / 16].any()
    # Skipping empty cells and pruning occluded samples must not change the image.
    o = torch.tensor([[0.0, 0.0, 3.0]]).expand(64, 3)
    d = torch.nn.functional.normalize(
        torch.cat([torch.rand(64, 2, generator=g) * 0.3 - 0.15, -torch.ones(64, 1)], 1), dim=-1
    )
    bg = torch.ones(64, 3)
    full = render_rays(field, o, d, None, bg, RenderConfig(step_size=0.005, prune=False))
    fast = render_rays(field, o, d, grid, bg, RenderConfig(step_size=0.005))
    assert torch.allclose(full["rgb"], fast["rgb"], atol=2e-3)
    assert fast["n_samples"] < full["n_samples"] / 4


def test_render_backpropagates_to_field():
    field = ConstantField(2.0)
    o = torch.tensor([[0.0, 0.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, -1.0]])
    out = render_rays(field, o, d, None, torch.ones(1, 3), RenderConfig(step_size=0.05))
    out["rgb"].sum().backward()
    assert field.rgb.grad is not None and torch.all(field.rgb.grad > 0)


def test_fused_march_matches_reference():
    from vision3d_kd.kernels.dispatch import get_extension
    from vision3d_kd.kernels.march_ref import march_rays_ref

    if get_extension("march") is None:  # march_rays would fall back to the reference and match itself
        pytest.skip("the fused march extension is not built (V3KD_NO_EXT=1 or no compiler)")

    g = torch.Generator().manual_seed(5)
    o = torch.randn(300, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    d = torch.nn.functional.normalize(torch.randn(300, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    grid = OccupancyGrid(BOX, resolution=16)
    grid.binary.copy_(torch.rand(16**3, generator=g) < 0.3)
    for occ in (None, grid.mask()):
        a = march_rays(o, d, BOX, 0.037, occ)
        b = march_rays_ref(o, d, BOX, 0.037, occ)
        assert torch.equal(a[0], b[0])
        assert torch.allclose(a[1], b[1], atol=1e-5) and torch.allclose(a[2], b[2], atol=1e-5)
    ga, gb = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = march_rays(o, d, BOX, 0.05, grid.mask(), jitter=True, generator=ga)
    b = march_rays_ref(o, d, BOX, 0.05, grid.mask(), jitter=True, generator=gb)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-5)


def test_distortion_loss_matches_the_double_sum_and_prefers_a_surface():
    from vision3d_kd.kernels.composite_ref import composite_weights_ref
    from vision3d_kd.render.distortion import distortion_loss, distortion_loss_dense

    gen = torch.Generator().manual_seed(0)
    counts = [5, 0, 9, 1]
    ray_i = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    edges = [torch.cumsum(0.01 + 0.2 * torch.rand(c + 1, generator=gen), 0) for c in counts]
    t_s, t_e = torch.cat([e[:-1] for e in edges]), torch.cat([e[1:] for e in edges])
    sigma = (5 * torch.rand(t_s.shape, generator=gen)).requires_grad_()
    got = distortion_loss(sigma, t_s, t_e, ray_i, len(counts))
    w = composite_weights_ref(sigma, t_s, t_e, ray_i, len(counts))
    want = sum(distortion_loss_dense(w[ray_i == i], t_s[ray_i == i], t_e[ray_i == i]) for i in range(len(counts)))
    want = want / len(counts)
    assert torch.allclose(got, want, rtol=1e-5)
    g_got, = torch.autograd.grad(got, sigma)
    g_want, = torch.autograd.grad(want, sigma)
    assert torch.allclose(g_got, g_want, rtol=1e-4, atol=1e-6)
    # the same total opacity in one interval (a surface) costs less than spread over the ray (fog)
    t = torch.linspace(0, 1, 101)
    surface = torch.zeros(100)
    surface[50] = 200.0
    fog = torch.full((100,), 2.0)
    ray = torch.zeros(100, dtype=torch.long)
    assert distortion_loss(surface, t[:-1], t[1:], ray, 1) < 0.1 * distortion_loss(fog, t[:-1], t[1:], ray, 1)
