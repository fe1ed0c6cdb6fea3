"""Image and geometry metrics. Images are float tensors in [0, 1] shaped [H, W, 3] or [N, H, W, 3]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "ssim_tensor", "mask_iou"]


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1] (mean over all pixels and channels)."""
    mse = torch.mean((pred.float() - target.float()) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_window(size: int, sigma: float, channels: int) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).float()
    return window.expand(channels, 1, size, size).contiguous()


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian 11x11 window, sigma 1.5, valid padding.

    pred, target: [H, W, C] or [N, H, W, C] in [0, 1]. Returns the mean SSIM over pixels, channels and images.
    """
    return float(ssim_tensor(pred.detach(), target.detach(), window, sigma))


def ssim_tensor(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """`ssim` as a differentiable 0-dim tensor (for D-SSIM losses)."""
    if pred.shape != target.shape:
        raise ValueError(f"ssim: shape mismatch {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.dim() == 3:
        pred, target = pred[None], target[None]
    x = pred.float().permute(0, 3, 1, 2)
    y = target.float().permute(0, 3, 1, 2)
    c = x.shape[1]
    w = _gaussian_window(window, sigma, c)
    c1, c2 = 0.01**2, 0.03**2
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def mask_iou(pred: Tensor, target: Tensor) -> float:
    """Intersection over union of two boolean masks (any shape); 1.0 when both are empty."""
    p, t = pred.bool(), target.bool()
    union = (p | t).sum().item()
    return 1.0 if union == 0 else (p & t).sum().item() / union
