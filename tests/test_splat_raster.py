"""Gaussian splat projection and rasterization: analytic cases, gradcheck, fused kernel vs reference."""

from __future__ import annotations

import math

import pytest
import torch

from vision3d_kd.cameras import Cameras
from vision3d_kd.fields.splats import GaussianSplats, rgb_to_sh_dc
from vision3d_kd.kernels.dispatch import get_extension
from vision3d_kd.kernels.splat import rasterize
from vision3d_kd.kernels.splat_ref import rasterize_ref, tile_bins
from vision3d_kd.render.splat import render_splats
from vision3d_kd.render.splat_project import project_gaussians, quat_to_rotmat, sh_colors

F = 50.0
W, H = 40, 36  # not multiples of the 16-pixel tile


def camera(width: int = W, height: int = H) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity world->camera (OpenCV) and intrinsics with the principal point at the image centre."""
    K = torch.tensor([[F, 0, width / 2], [0, F, height / 2], [0, 0, 1.0]])
    return torch.eye(4), K


def random_scene(n: int, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 3, generator=g)
    means = torch.stack([u[:, 0] * 1.6 - 0.8, u[:, 1] * 1.4 - 0.7, 2 + 2 * u[:, 2]], -1)
    return {
        "means": means.to(dtype),
        "quats": torch.randn(n, 4, generator=g).to(dtype),
        "scales": (0.03 + 0.12 * torch.rand(n, 3, generator=g)).to(dtype),
        "colors": torch.rand(n, 3, generator=g).to(dtype),
        "opacities": (0.2 + 0.75 * torch.rand(n, generator=g)).to(dtype),
    }


def test_single_gaussian_projection_matches_analytic_covariance():
    viewmat, K = camera()
    z, sx, sy, theta = 3.0, 0.2, 0.05, 0.6
    # rotation by theta about the optical axis: quaternion (cos(t/2), 0, 0, sin(t/2))
    q = torch.tensor([[math.cos(theta / 2), 0.0, 0.0, math.sin(theta / 2)]])
    proj = project_gaussians(torch.tensor([[0.0, 0.0, z]]), q, torch.tensor([[sx, sy, 0.1]]), viewmat, K, W, H)
    R2 = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = (F / z) ** 2 * R2 @ torch.diag(torch.tensor([sx**2, sy**2])) @ R2.T + 0.3 * torch.eye(2)
    inv = torch.linalg.inv(cov)
    torch.testing.assert_close(proj.conics[0], torch.stack([inv[0, 0], inv[0, 1], inv[1, 1]]), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(proj.means2d[0], torch.tensor([W / 2, H / 2]))
    assert proj.depths[0] == z and bool(proj.visible[0])
    lam = torch.linalg.eigvalsh(cov).max()
    assert int(proj.radii[0]) == math.ceil(3 * math.sqrt(lam))


def test_off_axis_mean_projects_through_the_pinhole():
    viewmat, K = camera()
    proj = project_gaussians(torch.tensor([[0.3, -0.2, 2.0]]), torch.tensor([[1.0, 0, 0, 0]]),
                             torch.full((1, 3), 0.05), viewmat, K, W, H)
    torch.testing.assert_close(proj.means2d[0], torch.tensor([W / 2 + F * 0.15, H / 2 - F * 0.1]))


def test_culling_behind_camera_and_off_screen():
    viewmat, K = camera()
    means = torch.tensor([[0.0, 0.0, -1.0], [50.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    proj = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(3, 1), torch.full((3, 3), 0.05),
                             viewmat, K, W, H)
    assert proj.visible.tolist() == [False, False, True]
    assert proj.radii[:2].tolist() == [0, 0]


def test_quaternion_rotation_is_orthonormal():
    R = quat_to_rotmat(torch.randn(10, 4))
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(10, 3, 3), atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(R), torch.ones(10), atol=1e-5)


@pytest.mark.parametrize("raster", [rasterize_ref, rasterize], ids=["torch", "fused"])
def test_two_gaussians_composite_front_to_back(raster):
    """Both centred on pixel (20, 18): front (opacity .6, red) over back (opacity .5, green) over blue."""
    viewmat, K = camera()
    K[0, 2], K[1, 2] = 20.5, 18.5  # pixel (20, 18)'s centre is the principal point
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    scales = torch.full((2, 3), 0.1)
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(2, 1)
    cols = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    bg = torch.tensor([0.0, 0.0, 1.0])
    for order in ([0, 1], [1, 0]):  # input order must not matter: depth decides
        proj = project_gaussians(means[order], quats, scales, viewmat, K, W, H)
        out = raster(proj, cols[order], torch.tensor([0.6, 0.5])[order], W, H, bg)
        px = out["rgb"][18, 20]
        torch.testing.assert_close(px, torch.tensor([0.6, 0.4 * 0.5, 0.4 * 0.5]), atol=1e-6, rtol=0)
        assert abs(float(out["opacity"][18, 20]) - 0.8) < 1e-6
        assert abs(float(out["depth"][18, 20]) - (0.6 * 2 + 0.2 * 3) / 0.8) < 1e-5


@pytest.mark.parametrize("raster", [rasterize_ref, rasterize], ids=["torch", "fused"])
def test_opaque_stack_terminates_early(raster):
    """Ten layers of alpha .98: after two, T = 4e-4 and a third would take it below 1e-4, so it and
    everything behind it are dropped (3DGS's early termination)."""
    viewmat, K = camera()
    K[0, 2], K[1, 2] = 20.5, 18.5
    n = 10
    means = torch.tensor([[0.0, 0.0, 2.0 + 0.1 * i] for i in range(n)])
    proj = project_gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), 0.5),
                             viewmat, K, W, H)
    cols = torch.zeros(n, 3)
    cols[2:, 0] = 1.0  # only layers behind the first two are red
    out = raster(proj, cols, torch.full((n,), 0.98), W, H)
    assert float(out["rgb"][18, 20, 0]) == 0.0
    assert abs(float(out["opacity"][18, 20]) - (1 - 0.02**2)) < 1e-6


def test_gradcheck_projection_and_reference_rasterizer():
    torch.manual_seed(0)
    viewmat, K = camera(12, 10)
    K = K.double()
    K[0, 0] = K[1, 1] = 12.0
    s = random_scene(3, seed=2, dtype=torch.float64)
    s["scales"] = s["scales"] * 4  # cover the tiny image so no pixel sits on the 1/255 cut
    s["opacities"] = torch.tensor([0.5, 0.4, 0.6], dtype=torch.float64)
    s["means"][:, :2] *= 0.3
    inputs = tuple(s[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "colors", "opacities"))

    def fn(means, quats, scales, colors, opacities):
        proj = project_gaussians(means, quats, scales, viewmat.double(), K, 12, 10)
        out = rasterize_ref(proj, colors, opacities, 12, 10, torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64))
        return out["rgb"], out["opacity"]

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def _fused_or_skip():
    if get_extension("splat") is None:
        pytest.skip("fused kernels unavailable (build failed or V3KD_NO_EXT=1)")


@pytest.mark.parametrize("n", [1, 60, 400])
def test_fused_matches_reference_values_and_gradients(n):
    _fused_or_skip()
    viewmat, K = camera()
    s = random_scene(n, seed=n)
    bg = torch.tensor([0.3, 0.6, 0.9])
    results = []
    for raster in (rasterize_ref, rasterize):
        leaves = {k: v.clone().requires_grad_(True) for k, v in s.items()}
        proj = project_gaussians(leaves["means"], leaves["quats"], leaves["scales"], viewmat, K, W, H)
        out = raster(proj, leaves["colors"], leaves["opacities"], W, H, bg)
        g = torch.Generator().manual_seed(9)
        loss = sum((out[k] * torch.randn(out[k].shape, generator=g)).sum() for k in ("rgb", "opacity", "depth"))
        loss.backward()
        results.append(({k: out[k].detach() for k in out}, {k: v.grad for k, v in leaves.items()}))
    (o_ref, g_ref), (o_fused, g_fused) = results
    for k in o_ref:
        torch.testing.assert_close(o_fused[k], o_ref[k], atol=2e-5, rtol=1e-4)
    for k in g_ref:
        torch.testing.assert_close(g_fused[k], g_ref[k], atol=1e-3, rtol=1e-3)


def test_fused_gradients_do_not_depend_on_thread_count():
    _fused_or_skip()
    viewmat, K = camera()
    s = random_scene(300, seed=5)
    grads = []
    before = torch.get_num_threads()
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            leaves = {k: v.clone().requires_grad_(True) for k, v in s.items()}
            proj = project_gaussians(leaves["means"], leaves["quats"], leaves["scales"], viewmat, K, W, H)
            rasterize(proj, leaves["colors"], leaves["opacities"], W, H)["rgb"].square().sum().backward()
            grads.append(torch.cat([v.grad.flatten() for v in leaves.values()]))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(grads[0], grads[1])


def test_reference_chunking_does_not_change_the_image():
    viewmat, K = camera()
    s = random_scene(200, seed=3)
    proj = project_gaussians(s["means"], s["quats"], s["scales"], viewmat, K, W, H)
    big = rasterize_ref(proj, s["colors"], s["opacities"], W, H, budget=1 << 24)
    small = rasterize_ref(proj, s["colors"], s["opacities"], W, H, budget=256)
    for k in big:
        torch.testing.assert_close(small[k], big[k])


def test_tile_bins_lists_each_overlap_in_depth_order():
    viewmat, K = camera()
    s = random_scene(100, seed=4)
    proj = project_gaussians(s["means"], s["quats"], s["scales"], viewmat, K, W, H)
    offsets, ids = tile_bins(proj, W, H)
    assert offsets[-1] == ids.numel() and len(offsets) == 3 * 3 + 1
    for t in range(9):
        d = proj.depths[ids[offsets[t] : offsets[t + 1]]]
        assert bool((d[1:] >= d[:-1]).all())


def test_render_splats_from_a_package_camera_sees_the_object():
    """A red Gaussian at the origin seen by an OpenGL camera at +z: centred, red, depth = distance."""
    sp = GaussianSplats(n=0, sh_degree=1)
    sp.set_params({
        "means": torch.zeros(1, 3),
        "log_scales": torch.full((1, 3), math.log(0.2)),
        "quats": torch.tensor([[1.0, 0, 0, 0]]),
        "opacity_logits": torch.tensor([4.0]),
        "sh": torch.cat([rgb_to_sh_dc(torch.tensor([[1.0, 0.0, 0.0]]))[:, None], torch.zeros(1, 3, 3)], 1),
    })
    c2w = torch.eye(4)
    c2w[2, 3] = 3.0
    cam = Cameras(c2w[None], F, F, W / 2, H / 2, W, H)
    for backend in ("cpu", "torch"):
        out = render_splats(sp, cam, torch.ones(3), backend=backend)
        px = out["rgb"][H // 2, W // 2]
        assert px[0] > 0.95 and px[1] < 0.1 and abs(float(out["depth"][H // 2, W // 2]) - 3.0) < 1e-3
        assert float(out["opacity"][0, 0]) < 1e-3


def test_sh_degree_zero_is_view_independent():
    sh = torch.randn(5, 16, 3)
    means = torch.randn(5, 3)
    a = sh_colors(sh, means, torch.tensor([0.0, 0.0, 5.0]), 0)
    b = sh_colors(sh, means, torch.tensor([5.0, 0.0, 0.0]), 0)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(sh_colors(sh, means, torch.tensor([0.0, 0.0, 5.0]), 3),
                              sh_colors(sh, means, torch.tensor([5.0, 0.0, 0.0]), 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat parity needs CUDA")
def test_gsplat_parity():
    pytest.importorskip("gsplat")
    viewmat, K = camera()
    s = random_scene(300, seed=7)
    outs = []
    for dev, backend in (("cpu", "cpu"), ("cuda", "gsplat")):
        sp = GaussianSplats(n=0, sh_degree=0)
        sp.set_params({"means": s["means"], "log_scales": s["scales"].log(), "quats": s["quats"],
                       "opacity_logits": torch.logit(s["opacities"]), "sh": rgb_to_sh_dc(s["colors"])[:, None]})
        sp = sp.to(dev)
        c2w = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))  # OpenCV identity view as OpenGL c2w
        cam = Cameras(c2w[None], F, F, W / 2, H / 2, W, H).to(dev)
        out = render_splats(sp, cam, torch.ones(3, device=dev), backend=backend)
        out["rgb"].sum().backward()
        outs.append((out["rgb"].detach().cpu(), sp.means.grad.cpu()))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-2, rtol=1e-2)
