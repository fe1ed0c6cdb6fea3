"""One picture of an object as image-to-3D input: any size, any PIL-readable format, EXIF orientation applied,
RGBA composited on white by its alpha (RGB is taken as already on white), optionally re-centred, padded to a
square with white and resized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError

__all__ = ["load_object_image", "image_to_array"]


def image_to_array(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """rgb [H,W,3] float32 in [0,1] and opacity [H,W] float32 (ones without alpha) of an image file;
    one-line DataError for a missing, undecodable, empty or non-finite image."""
    from PIL import Image, ImageOps

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.width < 1 or im.height < 1:
                raise DataError(f"{path}: the image is empty")
            if im.mode in ("F", "I", "I;16", "I;16B", "I;16L"):  # one float/integer channel: grey
                a = np.asarray(im, dtype=np.float64)
                a = a / (65535.0 if im.mode != "F" else 1.0) if im.mode != "I" else a / max(1.0, float(a.max()))
                rgb, opacity = np.repeat(a[..., None], 3, axis=-1), np.ones(a.shape)
            else:
                has_alpha = "A" in im.getbands() or "transparency" in im.info
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float64) / 255.0
                rgb, opacity = arr[..., :3], arr[..., 3] if has_alpha else np.ones(arr.shape[:2])
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: cannot decode image ({why})") from None
    if not np.isfinite(rgb).all():
        raise DataError(f"{path}: the image holds NaN or infinite values")
    return rgb.clip(0.0, 1.0).astype(np.float32), opacity.astype(np.float32)


def _recentre(rgb: np.ndarray, opacity: np.ndarray, fill: float, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Crop to the object (opacity > 0.5, or pixels not near white without alpha) and pad so its longer side
    is `fill` of the square's side, centred."""
    mask = opacity > 0.5 if (opacity < 1).any() else (rgb.min(-1) < 0.97)
    if not mask.any():
        raise DataError(f"{path}: no object found to re-centre (all background)")
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(np.ceil(max(y1 - y0, x1 - x0) / fill))
    out_rgb = np.ones((side, side, 3), np.float32)
    out_op = np.zeros((side, side), np.float32)
    oy, ox = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    out_rgb[oy:oy + y1 - y0, ox:ox + x1 - x0] = rgb[y0:y1, x0:x1]
    out_op[oy:oy + y1 - y0, ox:ox + x1 - x0] = opacity[y0:y1, x0:x1]
    return out_rgb, out_op


def load_object_image(path: Path, size: int, recentre: float | None = None) -> Tensor:
    """[3,size,size] in [0,1] on white: the image at `path` composited on white by its alpha, re-centred so
    the object fills `recentre` of the side (None: as framed), padded to a square, area-resized."""
    rgb, opacity = image_to_array(path)
    if (opacity <= 1.0 / 255.0).all():
        raise DataError(f"{path}: the image is fully transparent (nothing to reconstruct)")
    if recentre is not None:
        if not 0.1 <= recentre <= 1.0:
            raise DataError(f"--recentre must be in [0.1, 1], got {recentre}")
        rgb, opacity = _recentre(rgb, opacity, recentre, path)
    rgb = rgb * opacity[..., None] + (1.0 - opacity[..., None])
    h, w = rgb.shape[:2]
    side = max(h, w)
    square = np.ones((side, side, 3), np.float32)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = rgb
    x = torch.from_numpy(square).permute(2, 0, 1)[None]
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="area" if side > size else "bilinear", align_corners=None
                          if side > size else False)
    return x[0].clamp(0.0, 1.0)
