"""Undistortion of captured images onto pinhole cameras (OpenCV `remap`), and resampling to one size.

A source `Lens` (with distortion) and a destination pinhole `Lens` define, for every destination pixel,
where to read the source image: the destination pixel centre becomes a normalised pinhole coordinate
(x, y) = ((u - cx) / fx, (v - cy) / fy), which the source model distorts and projects. The same map
resizes (different image sizes land on one canvas) and undistorts in one interpolation.

Distortion (OpenCV's models, coefficients in OpenCV order):
  perspective: r2 = x² + y²; radial = 1 + k1 r2 + k2 r2² + k3 r2³;
               xd = x radial + 2 p1 x y + p2 (r2 + 2 x²); yd = y radial + p1 (r2 + 2 y²) + 2 p2 x y
  fisheye:     θ = atan(r); θd = θ (1 + k1 θ² + k2 θ⁴ + k3 θ⁶ + k4 θ⁸); (xd, yd) = (x, y) θd / r
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .lens import Lens

__all__ = ["distort_normalized", "undistorted_pinhole", "source_pixels", "remap_image"]


def distort_normalized(lens: Lens, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distorted normalised coordinates of ideal pinhole ones (x, y) (arrays of one shape) under `lens`."""
    if not lens.is_distorted:
        return x, y
    if lens.is_fisheye:
        k1, k2, k3, k4 = lens.dist
        r = np.hypot(x, y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        return x * scale, y * scale
    k1, k2, p1, p2, *rest = lens.dist
    k3 = rest[0] if rest else 0.0
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def source_pixels(src: Lens, dst: Lens, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel coordinates (package convention: centres at +0.5) seen by destination pixels (u, v)."""
    x = (u - dst.cx) / dst.fx
    y = (v - dst.cy) / dst.fy
    xd, yd = distort_normalized(src, x, y)
    return src.fx * xd + src.cx, src.fy * yd + src.cy


def _border(lens: Lens, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres along the image border of `lens` [4n] (package convention)."""
    s = np.linspace(0.0, 1.0, n)
    us = 0.5 + s * (lens.width - 1)
    vs = 0.5 + s * (lens.height - 1)
    top, bottom = np.full(n, 0.5), np.full(n, lens.height - 0.5)
    left, right = np.full(n, 0.5), np.full(n, lens.width - 0.5)
    return np.concatenate([us, us, left, right]), np.concatenate([top, bottom, vs, vs])


def undistorted_pinhole(lens: Lens) -> Lens:
    """The PINHOLE lens of `lens`'s image size whose every pixel sees inside the distorted image: same
    aspect of focal lengths, principal point at the centre, focal lengths scaled (binary search) as little
    as possible. A lens without distortion maps to itself (as PINHOLE)."""
    if not lens.is_distorted:
        return Lens("PINHOLE", lens.width, lens.height, lens.fx, lens.fy, lens.cx, lens.cy)
    u, v = _border(lens)

    def fits(zoom: float) -> bool:
        cand = Lens("PINHOLE", lens.width, lens.height, lens.fx * zoom, lens.fy * zoom,
                    lens.width / 2, lens.height / 2)
        su, sv = source_pixels(lens, cand, u, v)
        ok = np.isfinite(su) & np.isfinite(sv)
        return bool(ok.all() and (su >= 0).all() and (su <= lens.width).all()
                    and (sv >= 0).all() and (sv <= lens.height).all())

    lo, hi = 0.25, 4.0
    if not fits(hi):
        raise ValueError(f"{lens.model} lens: no pinhole view fits inside the distorted image")
    for _ in range(40):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return Lens("PINHOLE", lens.width, lens.height, lens.fx * hi, lens.fy * hi, lens.width / 2, lens.height / 2)


@functools.lru_cache(maxsize=16)
def _maps(src: Lens, dst: Lens) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV remap tables (float32 [dst.height, dst.width], OpenCV pixel convention), computed once per
    lens pair: frames sharing a camera share them, so undistorting costs one `cv2.remap` per image."""
    u, v = np.meshgrid(np.arange(dst.width) + 0.5, np.arange(dst.height) + 0.5)
    su, sv = source_pixels(src, dst, u, v)
    return (su - 0.5).astype(np.float32), (sv - 0.5).astype(np.float32)


def remap_image(image: np.ndarray, src: Lens, dst: Lens, nearest: bool = False) -> np.ndarray:
    """`image` [H, W] or [H, W, C] (float32, `src`'s size) resampled onto `dst` ([dst.height, dst.width, ...]):
    bilinear (nearest for depth-like maps); a source much larger than the destination is first
    area-averaged so the result does not alias. Pixels outside the source read the nearest border pixel."""
    if image.shape[:2] != (src.height, src.width):
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, lens says {src.width}x{src.height}")
    shrink = min(dst.fx / src.fx, dst.fy / src.fy)
    if not nearest and shrink < 0.67:
        w, h = max(1, round(src.width * shrink * 1.25)), max(1, round(src.height * shrink * 1.25))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        src = src.scaled(w / src.width, h / src.height, w, h)
    map_x, map_y = _maps(src, dst)
    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.remap(np.ascontiguousarray(image), map_x, map_y, mode, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(dst.height, dst.width, *image.shape[2:])
