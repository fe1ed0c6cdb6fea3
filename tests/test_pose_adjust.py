"""Camera-pose corrections (render/pose_adjust.py): the rotation maths, training with `refine_poses`
(resumable, refused where the field has no position gradient) and test-time alignment of a held-out camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vision3d_kd.cameras import Cameras, image_rays, look_at
from vision3d_kd.data import load_dataset
from vision3d_kd.errors import ConfigError
from vision3d_kd.fields import build_field
from vision3d_kd.metrics import psnr
from vision3d_kd.render.image import render
from vision3d_kd.render.pose_adjust import PoseAdjustment, adjust_cameras, adjust_rays, align_pose, so3_exp
from vision3d_kd.render.volume import RenderConfig
from vision3d_kd.train.config import apply_overrides, load_fit_config
from vision3d_kd.train.fit import fit

from .conftest import SMALL_HASHGRID

# 256 rays a step (SMALL_HASHGRID's 1024 cost 4x the time): resume equality, the 5-degree bound and the
# refine_until ratio do not depend on the batch (Adam's step size does not)
FIELD = [*SMALL_HASHGRID, "train.occ_warmup_steps=32", "train.max_seconds=0", "train.refine_poses=true",
         "train.batch_rays=256"]


def test_so3_exp_matches_scipy_and_is_smooth_at_zero():
    omega = torch.tensor([[0.3, -0.2, 0.9], [1e-6, 2e-6, -1e-6], [0.0, 0.0, 0.0], [2.5, 0.1, -0.4]],
                         dtype=torch.float64)
    want = Rotation.from_rotvec(omega.numpy()).as_matrix()
    np.testing.assert_allclose(so3_exp(omega).numpy(), want, atol=1e-12)
    w = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(so3_exp(w)[0, 2, 1], w)  # d R_zy / d ω_x = 1 at 0 (R ≈ I + [ω]x)
    assert torch.allclose(g, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))


def test_adjusted_cameras_cast_the_adjusted_rays():
    c2w = look_at(torch.tensor([[3.0, -2.0, 1.0], [0.5, 3.0, 2.0]]), torch.zeros(2, 3))
    cams = Cameras(c2w, 20.0, 22.0, 8.3, 6.1, 16, 12)
    delta = torch.tensor([[0.01, -0.02, 0.03, 0.1, 0.0, -0.05], [-0.004, 0.0, 0.02, 0.0, 0.2, 0.0]])
    moved = adjust_cameras(cams, delta)
    for i in range(2):
        o, d = image_rays(cams, i)
        o2, d2 = adjust_rays(o, d, delta[i].expand(o.shape[0], 6))
        mo, md = image_rays(moved, i)
        torch.testing.assert_close(o2, mo)
        torch.testing.assert_close(d2, md, atol=1e-6, rtol=0)
        torch.testing.assert_close(d2.norm(dim=1), torch.ones(d2.shape[0]))


def _textured_field() -> torch.nn.Module:
    """A hash-grid field with a rough random table: a dense, richly textured volume to align against."""
    torch.manual_seed(0)
    field = build_field({"field": "hashgrid", "aabb": [[-1, -1, -1], [1, 1, 1]], "n_levels": 6,
                         "log2_table_size": 14, "base_resolution": 4, "max_resolution": 64, "init_scale": 1.0})
    return field.eval()


def test_align_pose_recovers_a_perturbed_camera():
    field, settings = _textured_field(), RenderConfig(step_size=0.02)
    cams = Cameras(look_at(torch.tensor([[3.0, 0.5, 1.0]]), torch.zeros(1, 3)), 40.0, 40.0, 24.0, 18.0, 48, 36)
    target = render(field, cams, 0, None, settings)["rgb"]
    true_delta = torch.tensor([[0.008, -0.006, 0.004, 0.02, -0.015, 0.01]])  # ~0.6 deg, 0.03 units
    off = adjust_cameras(cams, true_delta)
    before = psnr(render(field, off, 0, None, settings)["rgb"], target)
    with torch.no_grad():  # as evaluation calls it
        fix = align_pose(field, None, settings, off, 0, target, steps=120, rays=1024)
    aligned = adjust_cameras(off, fix[None])
    after = psnr(render(field, aligned, 0, None, settings)["rgb"], target)
    rot_err = Rotation.from_matrix((aligned.c2w[0, :3, :3] @ cams.c2w[0, :3, :3].T).double().numpy()).magnitude()
    assert after > before + 15.0, (before, after)
    assert math.degrees(rot_err) < 0.2 * math.degrees(float(true_delta[0, :3].norm()))
    assert all(p.requires_grad for p in field.parameters())  # the field is unfrozen again


def crashed_then_resumed(train_ds, run, cfg) -> dict:
    """`fit` crashed at step 30 and resumed from its last checkpoint: the resumed run's metrics."""

    def crash(step: int, record: dict) -> None:
        if step == 30:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated"):
        fit(train_ds, None, run, cfg, callback=crash, show_progress=False)
    return fit(train_ds, None, run, cfg, resume=True, show_progress=False)


def test_fit_refines_poses_and_resumes_them(sphere_scene, tmp_path):
    train_ds = load_dataset(sphere_scene, "train")
    cfg = apply_overrides(load_fit_config("hashgrid"), FIELD + ["train.steps=40", "train.checkpoint_every=20"])
    whole = fit(train_ds, None, tmp_path / "whole", cfg, show_progress=False)
    assert 0 < whole["pose_rot_deg_max"] < 5.0
    resumed = crashed_then_resumed(train_ds, tmp_path / "crashed", cfg)
    for key in ("pose_rot_deg_mean", "pose_rot_deg_max", "pose_trans_mean"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("family", ["grid", "splats"])
@pytest.mark.parametrize("flag", ["refine_poses", "refine_intrinsics"])
def test_camera_refinement_is_refused_where_it_cannot_work(sphere_scene, tmp_path, flag, family):
    train_ds = load_dataset(sphere_scene, "train")
    cfg = apply_overrides(load_fit_config(family), ["train.steps=2", f"train.{flag}=true"])
    with pytest.raises(ConfigError, match=flag.replace("_", "-")):
        fit(train_ds, None, tmp_path / "run", cfg, show_progress=False)
    assert PoseAdjustment(3).summary()["pose_rot_deg_max"] == 0.0


def test_pose_refinement_stops_at_pose_refine_until(sphere_scene, tmp_path):
    """train.pose_refine_until: after that share of training the corrections are frozen (and the position
    backward, their cost, is skipped); an out-of-range value is a ConfigError."""
    train_ds = load_dataset(sphere_scene, "train")
    runs = {}
    for until in (1.0, 0.05):
        overrides = [*FIELD, "train.steps=20", f"train.pose_refine_until={until}"]
        cfg = apply_overrides(load_fit_config("hashgrid"), overrides)
        runs[until] = fit(train_ds, None, tmp_path / f"u{until}", cfg, show_progress=False)
    assert 0 < runs[0.05]["pose_rot_deg_max"] < 0.2 * runs[1.0]["pose_rot_deg_max"]
    bad = apply_overrides(load_fit_config("hashgrid"), [*FIELD, "train.pose_refine_until=0"])
    with pytest.raises(ConfigError, match="pose_refine_until"):
        fit(train_ds, None, tmp_path / "bad", bad, show_progress=False)
