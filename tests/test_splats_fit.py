"""Gaussian splats: the module, density control, training on a procedural scene, resume, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vision3d_kd.data import load_dataset
from vision3d_kd.fields import build_field
from vision3d_kd.fields.splats import GaussianSplats, knn_distance
from vision3d_kd.runs import load_field, save_field
from vision3d_kd.train.config import SplatTrainConfig, apply_overrides, load_fit_config
from vision3d_kd.train.density import DensityController
from vision3d_kd.train.fit import fit as fit_splats  # splats runs take the same entry
from vision3d_kd.train.splats import camera_extent

FAST = ["train.init_points=3000", "train.refine_start=50", "train.refine_every=50", "train.refine_stop=250",
        "train.reset_every=0", "train.sh_degree_every=100", "train.checkpoint_every=1000", "train.max_seconds=0"]


def _cfg(extra: list[str]):
    return apply_overrides(load_fit_config("splats"), FAST + extra)


def _optimizer(sp: GaussianSplats) -> torch.optim.Adam:
    return torch.optim.Adam([{"params": [getattr(sp, k)], "lr": 1e-3} for k in
                             ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")])


def test_knn_distance_on_a_lattice():
    g = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3) * 0.5
    torch.testing.assert_close(knn_distance(g, 3), torch.full((64,), 0.5), rtol=1e-6, atol=1e-6)


def test_save_load_round_trip_with_changed_count(tmp_path):
    sp = GaussianSplats(n=0, sh_degree=2).init_random(123, generator=torch.Generator().manual_seed(0))
    sp.active_sh_degree.fill_(2)
    save_field(tmp_path, sp)
    back, cfg = load_field(tmp_path)
    assert isinstance(back, GaussianSplats) and back.n == 123 and cfg["field"]["n"] == 123
    assert int(back.active_sh_degree) == 2
    for k, v in sp.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert build_field(sp.to_dict()).sh_rest.shape == (123, 8, 3)


def test_density_control_clones_splits_prunes_and_keeps_adam_state():
    cfg = SplatTrainConfig(refine_start=0, refine_every=1, refine_stop=100, reset_every=0, grow_grad2d=1e-3,
                           grow_scale3d=0.1, prune_opacity=0.05)
    sp = GaussianSplats(n=0, sh_degree=0)
    sp.set_params({
        "means": torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]]),
        "log_scales": torch.log(torch.tensor([[0.01] * 3, [0.5] * 3, [0.01] * 3, [0.01] * 3])),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(4, 1),
        "opacity_logits": torch.logit(torch.tensor([0.5, 0.5, 0.5, 0.01])),
        "sh": torch.zeros(4, 1, 3),
    })
    opt = _optimizer(sp)
    sp.means.sum().backward()
    opt.step()  # creates Adam moments
    moments_before = opt.state[sp.means]["exp_avg"].clone()
    ctl = DensityController(cfg, extent=1.0)
    g = torch.zeros(4, 2)
    g[:2] = 0.01  # Gaussians 0 (small: clone) and 1 (large: split) have high screen-space gradient
    m2d = torch.zeros(4, 2, requires_grad=True)
    m2d.grad = g
    ctl.accumulate(m2d, torch.ones(4, dtype=torch.bool), 2, 2)
    rep = ctl.step(1, sp, opt, torch.Generator().manual_seed(0))
    # 4 + 1 clone + 2 split samples - split original - transparent Gaussian 3 = 5
    assert rep == {"cloned": 1, "split": 1, "pruned": 2, "n": 5}
    assert sp.n == 5 and all(getattr(sp, k).shape[0] == 5 for k in ("log_scales", "quats", "sh_dc", "sh_rest"))
    # survivors keep their moments, new Gaussians start at zero; optimizer holds the new tensors
    assert opt.param_groups[0]["params"][0] is sp.means
    st = opt.state[sp.means]["exp_avg"]
    torch.testing.assert_close(st[:2], moments_before[[0, 2]])
    assert torch.count_nonzero(st[2:]) == 0
    # split children are 1.6x smaller than their parent
    torch.testing.assert_close(sp.scales[3:].max(), torch.tensor(0.5 / 1.6))
    opt.step()  # still a valid optimizer


def test_opacity_reset_caps_opacity():
    cfg = SplatTrainConfig(refine_start=10**6, refine_stop=100, reset_every=10)
    sp = GaussianSplats(n=0, sh_degree=0).init_random(10, generator=torch.Generator().manual_seed(0), opacity=0.9)
    ctl = DensityController(cfg, 1.0)
    assert ctl.step(10, sp, _optimizer(sp)) == {"reset": 1}
    assert float(sp.opacities.max()) <= 0.0100001


def test_camera_extent_of_a_ring():
    c2w = torch.eye(4).repeat(8, 1, 1)
    ang = torch.arange(8) * math.pi / 4
    c2w[:, 0, 3], c2w[:, 1, 3] = 4 * torch.cos(ang), 4 * torch.sin(ang)
    assert abs(camera_extent(c2w) - 4.4) < 1e-5


def test_fit_splats_on_a_procedural_scene_reaches_psnr(sphere_scene, tmp_path):
    train, test = load_dataset(sphere_scene, "train"), load_dataset(sphere_scene, "test")
    m = fit_splats(train, test, tmp_path / "run", _cfg(["train.steps=300"]), show_progress=False)
    assert m["steps"] == 300 and m["gaussians"] > 0
    assert m["psnr_test"] > 25.0, m
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("densify" in r for r in log)
    assert max(r["sh_degree"] for r in log) == 2


def test_init_from_a_field_run_places_gaussians_on_its_density(tmp_path):
    """A grid field that is dense only inside a ball of radius 0.5: Gaussians land in the ball."""
    from vision3d_kd.train.splat_init import points_from_run

    field = build_field({"field": "grid", "aabb": [[-1, -1, -1], [1, 1, 1]], "resolution": 32, "upsample": [],
                         "density_scale": 25.0})
    with torch.no_grad():
        c = (torch.arange(32) + 0.5) / 32 * 2 - 1  # voxel centres (align_corners=False layout)
        zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
        inside = (xx**2 + yy**2 + zz**2) < 0.5**2
        field.density_grid.copy_(torch.where(inside, 10.0, -20.0)[..., None])
    save_field(tmp_path / "run", field, {"render": {"step_size": 0.01}})
    pts, cols = points_from_run(tmp_path / "run", 500, torch.Generator().manual_seed(0))
    assert pts.shape == (500, 3) and cols.shape == (500, 3)
    assert float(pts.norm(dim=-1).max()) < 0.5 + 2 / 32  # within a voxel of the ball
    assert 0 <= float(cols.min()) and float(cols.max()) <= 1


def test_init_from_a_splats_run_is_refused(tmp_path):
    from vision3d_kd.errors import RunError
    from vision3d_kd.train.splat_init import points_from_run

    save_field(tmp_path / "run", GaussianSplats(n=0).init_random(10, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(RunError):
        points_from_run(tmp_path / "run", 5, torch.Generator())


def test_init_from_a_point_cloud_ply_and_a_splat_file(tmp_path):
    from vision3d_kd.errors import DataError
    from vision3d_kd.export import write_splats
    from vision3d_kd.train.splat_init import initial_points

    ply = tmp_path / "cloud.ply"
    ply.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                   "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
                   "0 0 0 255 0 0\n1 0 0 0 255 0\n0 1 0 0 0 255\n")
    pts, cols = initial_points(str(ply), 10, torch.Generator().manual_seed(0))
    torch.testing.assert_close(pts, torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]))
    torch.testing.assert_close(cols, torch.eye(3))
    sp = GaussianSplats(n=0, sh_degree=0).init_points(pts, cols)
    write_splats(sp.to_params(), tmp_path / "s.splat")
    pts2, cols2 = initial_points(str(tmp_path / "s.splat"), 2, torch.Generator().manual_seed(0))
    assert pts2.shape == (2, 3) and cols2.shape == (2, 3)  # a random subset when the file has more
    assert torch.cdist(pts2, pts).min(dim=1).values.max() < 1e-6
    with pytest.raises(DataError):
        initial_points(str(tmp_path / "missing.ply"), 5, torch.Generator())
