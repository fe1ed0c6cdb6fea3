"""PSNR / SSIM / IoU against hand-computed values."""

import math

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
