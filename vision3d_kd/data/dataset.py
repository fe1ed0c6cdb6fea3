"""The in-memory posed image set every loader returns, and area downscaling of its maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import DEFAULT_AABB, Cameras
from ..errors import ConfigError

__all__ = [
    "Dataset",
    "background_color",
    "downscale_rgba",
    "downscale_depth",
    "downscale_normal",
]

def background_color(background: Tensor | str | tuple[float, float, float]) -> Tensor:
    """A background colour [3] in [0, 1] from ``"white"``, ``"black"`` or three numbers."""
    if isinstance(background, str):
        table = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
        if background not in table:
            raise ConfigError(f"background must be 'white', 'black' or an RGB triple, got {background!r}")
        return torch.tensor(table[background])
    bg = torch.as_tensor(background, dtype=torch.float32).reshape(-1)
    if bg.shape != (3,):
        raise ConfigError(f"background colour must have 3 values, got {tuple(bg.shape)}")
    return bg


@dataclass
class Dataset:
    """Posed images of one split.

    rgb: [N, H, W, 3] float32 straight (not premultiplied) colour in [0, 1];
    opacity: [N, H, W, 1] float32 coverage in [0, 1] (the images' alpha channel; ones when they have none);
    cameras: N cameras (OpenGL c2w, pixels); aabb: [2, 3] scene box (min, max) in world units;
    depth: [N, H, W] ray distance in world units (inf where nothing is hit) or None;
    normal: [N, H, W, 3] unit world-frame normals (zeros where nothing is hit) or None;
    names: N frame names; path: the dataset folder; split: "train", "test", ...;
    transform: [4,4] float64 similarity from the capture's own frame to this (model) frame (identity
    for data that is not normalised); scene: "bounded" (everything inside `aabb`) or "unbounded" (`aabb`
    is the foreground, the rest is contracted); points / point_colors: [P,3] sparse points (model frame)
    and their colours in [0, 1] (structure from motion), or None.
    """

    rgb: Tensor
    opacity: Tensor
    cameras: Cameras
    aabb: Tensor = field(default_factory=lambda: torch.tensor(DEFAULT_AABB))
    depth: Tensor | None = None
    normal: Tensor | None = None
    names: list[str] = field(default_factory=list)
    path: Path = field(default_factory=Path)
    split: str = "train"
    transform: Tensor = field(default_factory=lambda: torch.eye(4, dtype=torch.float64))
    scene: str = "bounded"
    points: Tensor | None = None
    point_colors: Tensor | None = None

    def __len__(self) -> int:
        return self.rgb.shape[0]

    @property
    def height(self) -> int:
        return self.rgb.shape[1]

    @property
    def width(self) -> int:
        return self.rgb.shape[2]

    def images(self, background: Tensor | str | tuple[float, float, float] = "white") -> Tensor:
        """Images [N, H, W, 3] composited over a constant background colour."""
        bg = background_color(background).to(self.rgb)
        return self.rgb * self.opacity + bg * (1.0 - self.opacity)


def _pool(x: Tensor, factor: int) -> Tensor:
    """Mean over factor x factor blocks of [H, W, C] (the bottom/right remainder is cropped)."""
    h, w = (x.shape[0] // factor) * factor, (x.shape[1] // factor) * factor
    x = x[:h, :w].permute(2, 0, 1)[None]
    return F.avg_pool2d(x, factor)[0].permute(1, 2, 0)


def downscale_rgba(rgb: Tensor, alpha: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """Area-average straight rgb [H, W, 3] and alpha [H, W, 1] by an integer factor.

    Colour is averaged premultiplied and divided back by the averaged alpha, so transparent
    pixels do not bleed into edges; fully transparent blocks keep their plain mean colour.
    """
    if factor == 1:
        return rgb, alpha
    a = _pool(alpha, factor)
    premult = _pool(rgb * alpha, factor)
    plain = _pool(rgb, factor)
    straight = torch.where(a > 1e-6, premult / a.clamp_min(1e-6), plain)
    return straight.clamp(0.0, 1.0), a


def downscale_depth(depth: Tensor, factor: int) -> Tensor:
    """Mean of the finite ray distances in each block of depth [H, W]; inf where a block has none."""
    if factor == 1:
        return depth
    finite = torch.isfinite(depth)
    count = _pool(finite.float()[..., None], factor)[..., 0]
    total = _pool(torch.where(finite, depth, 0.0)[..., None], factor)[..., 0]
    return torch.where(count > 0, total / count.clamp_min(1e-12), float("inf"))


def downscale_normal(normal: Tensor, factor: int) -> Tensor:
    """Block mean of normals [H, W, 3], renormalised; zero vectors stay zero."""
    if factor == 1:
        return normal
    n = _pool(normal, factor)
    norm = n.norm(dim=-1, keepdim=True)
    return torch.where(norm > 1e-6, n / norm.clamp_min(1e-6), 0.0)
