"""Image and geometry metrics. Images are float tensors in [0, 1] shaped [H, W, 3] or [N, H, W, 3]."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "ssim_tensor", "mask_iou", "surface_samples", "chamfer_to_sdf", "surface_color_error",
           "foreground_mask", "masked_color_error", "normalized_log_depth", "depth_from_normalized_log",
           "valid_depth", "median_scale", "depth_metrics", "temporal_jitter", "MVSEC_LOG_DEPTH",
           "EVENTSCAPE_LOG_DEPTH", "DEPTH_CUTOFFS", "align_similarity", "pose_errors"]


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


def surface_samples(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n points [n,3] drawn uniformly by area on a triangle mesh (vertices [V,3], faces [F,3])."""
    tri = vertices[faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random((2, n))
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[pick]
    return (t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])).astype(np.float32)


def chamfer_to_sdf(vertices: np.ndarray, faces: np.ndarray, scene, n: int = 20000, seed: int = 0) -> float:
    """Symmetric mean Chamfer distance (world units) between a mesh's surface and an SDFScene's: mesh
    samples' |sdf| (exact distance to the true surface) and true surface points' distance to the
    nearest mesh sample, averaged."""
    from scipy.spatial import cKDTree

    mesh_pts = surface_samples(vertices, faces, n, seed)
    true_pts = scene.surface_points(n, torch.Generator().manual_seed(seed)).numpy()
    d_mesh = np.abs(scene.sdf(torch.from_numpy(mesh_pts)).numpy()).mean()
    d_true = cKDTree(mesh_pts).query(true_pts)[0].mean()
    return float(0.5 * (d_mesh + d_true))


def surface_color_error(points: np.ndarray, colors: np.ndarray, scene, shading=None) -> float:
    """Mean absolute RGB error of colours [N,3] in [0,1] at points [N,3] against the scene's true shaded
    colour (data.procedural.Shading, view-independent) at each point's projection onto the true surface;
    points where the true normal is undefined (a cone's apex or axis) are skipped."""
    from .data.procedural import Shading

    x = torch.from_numpy(np.asarray(points, np.float32))
    for _ in range(4):  # project along the SDF gradient
        x = x - scene.sdf(x)[:, None] * scene.normal(x)
    normal = scene.normal(x)
    truth = (shading or Shading()).shade(scene.color(x), normal)
    ok = (normal.norm(dim=-1) > 0.5).numpy()  # the SDF gradient is undefined on a cone's apex or axis
    return float(np.abs(np.asarray(colors, np.float32)[ok] - truth.numpy()[ok]).mean())


def foreground_mask(images: Tensor, threshold: float = 0.12) -> Tensor:
    """Object mask [...,H,W] of images [...,3,H,W] in [0,1] on a white background: pixels whose largest
    channel distance from white exceeds `threshold`."""
    return (1.0 - images).amax(dim=-3) > threshold


def masked_color_error(pred: Tensor, target: Tensor, pred_mask: Tensor, target_mask: Tensor) -> float:
    """Mean absolute difference (RGB in [0,1], averaged over channels) between the mean colour of pred
    [3,H,W] inside pred_mask [H,W] and of target inside target_mask; 1.0 when a mask is empty."""
    if not pred_mask.any() or not target_mask.any():
        return 1.0
    return float((pred[:, pred_mask].mean(-1) - target[:, target_mask].mean(-1)).abs().mean())


# --- depth -------------------------------------------------------------------------------------------
# Normalised log depth D^ = 1 + log(D / D_max) / alpha of the event-depth literature (Hidalgo-Carrio et al.)
MVSEC_LOG_DEPTH = (80.0, 3.70378)
EVENTSCAPE_LOG_DEPTH = (1000.0, 5.70378)
DEPTH_CUTOFFS = (10.0, 20.0, 30.0)


def normalized_log_depth(depth: Tensor, d_max: float, alpha: float) -> Tensor:
    """D^ = 1 + log(D / d_max) / alpha, clamped to [0, 1] (metres in; 1 at d_max, 0 at d_max e^-alpha)."""
    return (1.0 + torch.log(depth.clamp_min(1e-6) / d_max) / alpha).clamp(0.0, 1.0)


def depth_from_normalized_log(nlog: Tensor, d_max: float, alpha: float) -> Tensor:
    """Metric depth (metres) from normalised log depth: d_max * exp(alpha (D^ - 1))."""
    return d_max * torch.exp(alpha * (nlog - 1.0))


def valid_depth(gt: Tensor, max_depth: float = math.inf) -> Tensor:
    """Pixels with a usable ground truth: finite, > 0 and <= max_depth."""
    return torch.isfinite(gt) & (gt > 0) & (gt <= max_depth)


def median_scale(pred: Tensor, gt: Tensor, mask: Tensor) -> float:
    """Scale s = median(gt / pred) over mask, for predictions known only up to scale (1.0 if mask empty)."""
    if not mask.any():
        return 1.0
    return float(torch.median(gt[mask] / pred[mask].clamp_min(1e-6)))


def depth_metrics(pred: Tensor, gt: Tensor, mask: Tensor | None = None,
                  cutoffs: tuple[float, ...] = DEPTH_CUTOFFS) -> dict[str, float]:
    """Standard depth errors over the pixels in mask (default: valid gt), depths in metres:
    abs_rel, sq_rel, rmse, rmse_log, delta1..3 (share with max(p/g, g/p) < 1.25^k), and err{c} = mean
    |pred - gt| over pixels whose gt is below c metres (NaN where there are none)."""
    mask = valid_depth(gt) if mask is None else mask & valid_depth(gt)
    p, g = pred[mask].double().clamp_min(1e-6), gt[mask].double()
    if p.numel() == 0:
        raise ValueError("depth_metrics: no valid ground-truth pixels")
    ratio = torch.maximum(p / g, g / p)
    out = {"abs_rel": float(((p - g).abs() / g).mean()), "sq_rel": float(((p - g) ** 2 / g).mean()),
           "rmse": float(((p - g) ** 2).mean().sqrt()), "rmse_log": float(((p.log() - g.log()) ** 2).mean().sqrt())}
    out.update({f"delta{k}": float((ratio < 1.25**k).double().mean()) for k in (1, 2, 3)})
    for c in cutoffs:
        near = g < c
        out[f"err{int(c)}"] = float((p[near] - g[near]).abs().mean()) if near.any() else float("nan")
    return out


def temporal_jitter(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> float:
    """Mean |(D_pred[k+1] - D_pred[k]) - (D_gt[k+1] - D_gt[k])| (metres) over adjacent frames of
    pred, gt [F,H,W], on pixels valid in both frames."""
    if pred.shape[0] < 2:
        raise ValueError("temporal_jitter needs at least two frames")
    mask = valid_depth(gt) if mask is None else mask & valid_depth(gt)
    both = mask[1:] & mask[:-1]
    diff = (pred[1:] - pred[:-1]) - (gt[1:] - gt[:-1])
    return float(diff[both].abs().mean()) if both.any() else float("nan")


# --- camera poses ------------------------------------------------------------------------------------


def align_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991) taking points ``src`` [N,3] onto ``dst`` [N,3]:
    ``dst ~ s * R @ src + t`` with scale s > 0, rotation R [3,3] (det +1) and translation t [3]."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError(f"align_similarity: need two [N,3] arrays with N >= 3, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var_s = float((a**2).sum(1).mean())
    if var_s <= 0:
        raise ValueError("align_similarity: the source points all coincide")
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ flip @ vt
    scale = float(np.trace(np.diag(d) @ flip) / var_s)
    return scale, rot, mu_d - scale * rot @ mu_s


def pose_errors(est_c2w: np.ndarray, true_c2w: np.ndarray) -> dict[str, float]:
    """Camera pose errors of estimated camera-to-world matrices [N,4,4] against true ones [N,4,4] (same axis
    convention, e.g. both OpenGL; any world frame and scale): the estimated centres are aligned to the true
    ones by `align_similarity`, then per camera the rotation error is the angle (degrees) of
    ``R_true^T @ R_align @ R_est`` and the translation error the aligned centre's distance from the true one,
    as a fraction of the true cameras' spread (largest distance of a true centre from their mean).
    Returns rot_err_deg (mean) / rot_err_deg_max, trans_err (mean) / trans_err_max and the alignment scale."""
    est, true = np.asarray(est_c2w, np.float64), np.asarray(true_c2w, np.float64)
    if est.shape != true.shape or est.ndim != 3 or est.shape[1:] != (4, 4):
        raise ValueError(f"pose_errors: need two [N,4,4] arrays, got {est.shape} and {true.shape}")
    scale, rot, t = align_similarity(est[:, :3, 3], true[:, :3, 3])
    centres = scale * est[:, :3, 3] @ rot.T + t
    spread = float(np.linalg.norm(true[:, :3, 3] - true[:, :3, 3].mean(0), axis=1).max())
    trans = np.linalg.norm(centres - true[:, :3, 3], axis=1) / spread
    delta = np.swapaxes(true[:, :3, :3], 1, 2) @ rot @ est[:, :3, :3]
    skew = delta - np.swapaxes(delta, 1, 2)  # 2 sin(angle) [axis]x: atan2 stays exact near 0 and 180 degrees
    sin = 0.5 * np.linalg.norm(np.stack([skew[:, 2, 1], skew[:, 0, 2], skew[:, 1, 0]], 1), axis=1)
    ang = np.degrees(np.arctan2(sin, (np.trace(delta, axis1=1, axis2=2) - 1.0) / 2.0))
    return {"rot_err_deg": float(ang.mean()), "rot_err_deg_max": float(ang.max()),
            "trans_err": float(trans.mean()), "trans_err_max": float(trans.max()), "scale": scale}
