"""Camera-intrinsics corrections (render/intrinsics_adjust.py): grouping images by camera, the corrected
cameras, recovery of a focal-length error through a frozen field, and `fit --refine-intrinsics` (resumable,
saved in the run, used again by `v3kd eval`)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_pose_adjust import FIELD, _textured_field, crashed_then_resumed
from vision3d_kd.cameras import Cameras, camera_rays, look_at
from vision3d_kd.data import load_dataset
from vision3d_kd.evaluate import evaluate_run
from vision3d_kd.render.image import render
from vision3d_kd.render.intrinsics_adjust import INTRINSICS_FILE, IntrinsicsAdjustment, adjust_intrinsics
from vision3d_kd.render.volume import RenderConfig, render_rays
from vision3d_kd.train.config import apply_overrides, load_fit_config
from vision3d_kd.train.fit import fit_dataset


def _cams(fx: list[float]) -> Cameras:
    eye = torch.tensor([[3.0, 0.5, 1.0], [2.5, -1.5, 1.2], [-2.0, 2.5, 0.8], [0.3, -3.0, 1.5]])[: len(fx)]
    f = torch.tensor(fx)
    return Cameras(look_at(eye, torch.zeros(len(fx), 3)), f, f, 24.0, 18.0, 48, 36)


def test_images_are_grouped_by_camera_and_corrections_follow_the_group():
    cams = _cams([40.0, 40.0, 52.0, 40.00001])
    adj = IntrinsicsAdjustment.from_cameras(cams)
    assert adj.keys.shape == (2, 4)
    assert adj.group_of(cams).tolist() == [0, 0, 1, 0]
    assert adj.group_of(_cams([61.0])).tolist() == [-1]  # another camera: left as it is
    with torch.no_grad():
        adj.delta.copy_(torch.tensor([[0.02, 0.01, -0.005], [-0.01, 0.0, 0.0]]))
    out = adj(cams)
    torch.testing.assert_close(out.fx, torch.tensor([40.0, 40.0, 52.0, 40.00001]) * torch.exp(torch.tensor(
        [0.02, 0.02, -0.01, 0.02])))
    torch.testing.assert_close(out.cx[0], torch.tensor(24.0 + 0.01 * 40.0))
    torch.testing.assert_close(out.cy[0], torch.tensor(18.0 - 0.005 * 40.0))
    assert adj(_cams([61.0])).fx.item() == 61.0
    back = IntrinsicsAdjustment.from_dict(json.loads(json.dumps(adj.to_dict())))
    torch.testing.assert_close(back(cams).fx, out.fx)
    summary = adj.summary()
    assert summary["intrinsics_groups"] == 2
    assert summary["focal_change_pct_max"] == pytest.approx(2.0201, abs=1e-3)


def test_a_focal_length_error_is_recovered_through_the_frozen_field():
    """Images rendered with focal 40 px, cameras given with 41.2 px (+3 %): learning (s, a, b) against the
    images brings the focal back within 0.3 % and the image error down by more than 10 dB."""
    field, settings = _textured_field(), RenderConfig(step_size=0.02)
    for p in field.parameters():
        p.requires_grad_(False)
    true = _cams([40.0, 40.0, 40.0])
    targets = torch.stack([render(field, true, i, None, settings)["rgb"] for i in range(3)]).reshape(-1, 3)
    given = _cams([41.2, 41.2, 41.2])
    adj = IntrinsicsAdjustment.from_cameras(given)
    opt = torch.optim.Adam(adj.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    n_pix = 48 * 36

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        image, pixel = idx // n_pix, idx % n_pix
        o, d = camera_rays(adj(given), image, (pixel % 48).float() + 0.5, (pixel // 48).float() + 0.5)
        out = render_rays(field, o, d, None, torch.ones(idx.numel(), 3), settings)
        return torch.mean((out["rgb"] - targets[idx]) ** 2)

    probe = torch.randint(0, 3 * n_pix, (2048,), generator=gen)
    with torch.no_grad():
        before = loss_of(probe).item()
    for _ in range(150):
        loss = loss_of(torch.randint(0, 3 * n_pix, (1024,), generator=gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = loss_of(probe).item()
    focal = adj(given).fx[0].item()
    assert abs(focal / 40.0 - 1) < 0.003, focal
    assert 10 * torch.log10(torch.tensor(before / after)) > 10.0, (before, after)


def test_adjusted_intrinsics_cast_the_rays_of_the_moved_pixels():
    """Scaling the focal by e^s is the same as moving each pixel away from the principal point by e^-s."""
    cams = _cams([40.0])
    moved = adjust_intrinsics(cams, torch.tensor([[0.05, 0.0, 0.0]]))
    px, py = torch.tensor([3.5, 30.5]), torch.tensor([2.5, 33.5])
    _, d1 = camera_rays(moved, torch.zeros(2, dtype=torch.long), px, py)
    s = torch.exp(torch.tensor(-0.05))
    _, d2 = camera_rays(cams, torch.zeros(2, dtype=torch.long), 24.0 + (px - 24.0) * s, 18.0 + (py - 18.0) * s)
    torch.testing.assert_close(d1, d2)


def test_fit_refines_intrinsics_resumes_them_and_eval_uses_them(sphere_scene, tmp_path):
    cfg = apply_overrides(load_fit_config("hashgrid"), FIELD + ["train.steps=40", "train.checkpoint_every=20",
                                                                "train.refine_poses=false",
                                                                "train.refine_intrinsics=true"])
    _, whole = fit_dataset(sphere_scene, tmp_path / "whole", cfg, show_progress=False)
    saved = json.loads((tmp_path / "whole" / INTRINSICS_FILE).read_text())
    assert len(saved["cameras"]) == 1 and 0 < whole["focal_change_pct_max"] < 5.0
    _, scores = evaluate_run(tmp_path / "whole")  # the same corrected cameras as fit's own held-out score
    assert scores["psnr"] == pytest.approx(whole["psnr_test"], abs=1e-3)
    (tmp_path / "whole" / INTRINSICS_FILE).unlink()
    _, plain = evaluate_run(tmp_path / "whole")
    assert plain["psnr"] != pytest.approx(whole["psnr_test"], abs=1e-3)

    train_ds = load_dataset(sphere_scene, "train")
    resumed = crashed_then_resumed(train_ds, tmp_path / "crashed", cfg)
    assert resumed["focal_change_pct_max"] == pytest.approx(whole["focal_change_pct_max"], rel=1e-6, abs=1e-9)
