"""Exports in the capture's own frame: a similarity undone on meshes, points and Gaussians."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from vision3d_kd.cameras import Cameras, look_at
from vision3d_kd.export.frame import mesh_to_capture, points_to_capture, splats_to_capture
from vision3d_kd.export.mesh import Mesh
from vision3d_kd.fields.splats import GaussianSplats
from vision3d_kd.render.splat import render_splats
from vision3d_kd.train.splats import background_shell


def _similarity() -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = 0.37 * Rotation.from_euler("xyz", [25, -40, 70], degrees=True).as_matrix()
    t[:3, 3] = [0.3, -1.2, 0.8]
    return t


def test_points_and_meshes_go_back_to_the_capture_frame() -> None:
    t = _similarity()
    x = np.random.default_rng(0).normal(size=(50, 3))
    model = x @ t[:3, :3].T + t[:3, 3]
    assert np.allclose(points_to_capture(model, t), x)
    mesh = Mesh(model.astype(np.float32), np.array([[0, 1, 2]]), colors=np.full((50, 3), 0.5, np.float32))
    back = mesh_to_capture(mesh, t)
    assert np.allclose(back.vertices, x, atol=1e-5) and back.faces is mesh.faces and back.info["frame"] == "capture"


def test_splats_in_the_capture_frame_render_the_same_image() -> None:
    # Gaussians with view-dependent colour (SH degree 2), seen from a camera moved by the same similarity
    gen = torch.Generator().manual_seed(0)
    splats = GaussianSplats(aabb=[[-1] * 3, [1] * 3], n=0, sh_degree=2)
    pts = torch.rand(300, 3, generator=gen) * 1.2 - 0.6
    splats.init_points(pts, torch.rand(300, 3, generator=gen), opacity=0.6, generator=gen)
    with torch.no_grad():
        splats.sh[:, 1:] = 0.3 * torch.randn(splats.sh[:, 1:].shape, generator=gen)
    splats.active_sh_degree.fill_(2)
    t = _similarity()
    c2w = look_at(torch.tensor([[2.0, -2.5, 1.5]]), torch.zeros(1, 3), torch.tensor([0.0, 0.0, 1.0]))
    cam = Cameras(c2w, 60.0, 60.0, 32.0, 24.0, 64, 48)
    ref = render_splats(splats, cam, torch.ones(3), backend="torch")["rgb"]

    captured = GaussianSplats(aabb=[[-10] * 3, [10] * 3], n=0, sh_degree=2)
    captured.set_params(splats_to_capture(splats.to_params(), t))
    captured.active_sh_degree.fill_(2)
    s = abs(np.linalg.det(t[:3, :3])) ** (1 / 3)
    rot = t[:3, :3] / s
    m = c2w[0].double().numpy().copy()
    m[:3, :3] = rot.T @ m[:3, :3]
    m[:3, 3] = points_to_capture(m[None, :3, 3], t)[0]
    cam_c = Cameras(torch.tensor(m[None], dtype=torch.float32), 60.0, 60.0, 32.0, 24.0, 64, 48)
    out = render_splats(captured, cam_c, torch.ones(3), backend="torch")["rgb"]
    assert (out - ref).abs().max() < 2e-3


def test_background_shell_is_even_on_its_sphere() -> None:
    pts, cols = background_shell(500, 7.0, torch.Generator().manual_seed(1))
    assert torch.allclose(pts.norm(dim=-1), torch.full((500,), 7.0), atol=1e-4)
    assert pts.mean(0).abs().max() < 0.1 and cols.shape == (500, 3)
