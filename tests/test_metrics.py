"""PSNR / SSIM / IoU against hand-computed values; pose errors under known similarities and perturbations."""

import math

import numpy as np
import pytest
import torch

from vision3d_kd.metrics import mask_iou, psnr, ssim


def test_psnr_known_mse():
    a = torch.zeros(4, 4, 3)
    b = torch.full((4, 4, 3), 0.1)
    assert math.isclose(psnr(a, b), 20.0, rel_tol=1e-5)


def test_ssim_identity_and_degradation():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 32, 3, generator=g)
    assert abs(ssim(img, img) - 1.0) < 1e-6
    noisy = (img + 0.2 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    assert ssim(noisy, img) < 0.9


def test_mask_iou():
    a = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert mask_iou(a, b) == 1 / 3


# --- camera poses -------------------------------------------------------------------------------------


def _random_c2w(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n,4,4] random rigid camera-to-world matrices."""
    from scipy.spatial.transform import Rotation

    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = Rotation.random(n, random_state=rng.integers(1 << 30)).as_matrix()
    out[:, :3, 3] = rng.normal(size=(n, 3)) * 2
    return out


def test_align_similarity_recovers_a_known_similarity() -> None:
    from scipy.spatial.transform import Rotation

    from vision3d_kd.metrics import align_similarity

    rng = np.random.default_rng(0)
    src = rng.normal(size=(30, 3))
    rot = Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix()
    s, r, t = align_similarity(src, 2.5 * src @ rot.T + [1.0, -2.0, 3.0])
    assert s == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [1.0, -2.0, 3.0])
    with pytest.raises(ValueError):
        align_similarity(src[:2], src[:2])


def test_pose_errors_zero_under_a_similarity_and_the_angle_of_a_perturbation() -> None:
    from scipy.spatial.transform import Rotation

    from vision3d_kd.metrics import pose_errors

    rng = np.random.default_rng(1)
    true = _random_c2w(rng, 12)
    sim = np.eye(4)  # world' = 0.3 R world + t: what a reconstruction in another frame and scale looks like
    sim[:3, :3] = 0.3 * Rotation.from_rotvec([1.0, 0.5, -0.7]).as_matrix()
    sim[:3, 3] = [4.0, -1.0, 2.0]
    est = sim @ true
    est[:, :3, :3] /= 0.3  # keep the rotations rigid
    err = pose_errors(est, true)
    assert err["rot_err_deg_max"] < 1e-6 and err["trans_err_max"] < 1e-9 and err["scale"] == pytest.approx(1 / 0.3)
    bumped = est.copy()
    bumped[3, :3, :3] = bumped[3, :3, :3] @ Rotation.from_rotvec([0.0, np.radians(2.0), 0.0]).as_matrix()
    err = pose_errors(bumped, true)  # one camera turned 2 degrees about its own axis; centres unchanged
    assert err["rot_err_deg_max"] == pytest.approx(2.0, abs=1e-6)
    assert err["rot_err_deg"] == pytest.approx(2.0 / 12, abs=1e-6) and err["trans_err_max"] < 1e-9
    moved = est.copy()
    spread = np.linalg.norm(true[:, :3, 3] - true[:, :3, 3].mean(0), axis=1).max()
    moved[5, :3, 3] += 0.3 * np.array([0.0, 0.0, 0.05 * spread])  # 5% of the spread, in est's scale
    err = pose_errors(moved, true)
    assert 0.03 < err["trans_err_max"] < 0.05 and err["trans_err"] < err["trans_err_max"]
