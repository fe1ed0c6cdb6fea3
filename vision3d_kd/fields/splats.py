"""3D Gaussian splats (Kerbl et al. 2023) as a trainable module with the same run/config contract as
the radiance fields (name, aabb, to_dict/from_dict, safetensors weights).

Stored pre-activation, in the world frame (world units): means [N,3]; log_scales [N,3] (scale = exp);
quats [N,4] wxyz (normalised when used); opacity_logits [N] (opacity = sigmoid); sh_dc [N,1,3] and
sh_rest [N,K-1,3] spherical-harmonic colour coefficients, K = (sh_degree + 1)^2, colour =
0.5 + SH . basis(direction) (3DGS convention, C0 = 0.28209479177387814).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import bounded
from ..errors import ConfigError
from .base import FieldConfig, config_from_dict, jsonable, resolve_config

__all__ = ["GaussianSplats", "SplatsConfig", "SH_C0", "rgb_to_sh_dc"]

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """Colour in [0,1] [N,3] -> DC coefficient [N,3] that renders it (view-independently)."""
    return (rgb - 0.5) / SH_C0


@dataclass
class SplatsConfig(FieldConfig):
    """Options of `GaussianSplats`: `n` Gaussians (the current count when saved) and SH degree 0..3 (3DGS
    convention: degree d has (d + 1)^2 coefficients per colour channel)."""

    n: int = bounded(0, 0, 50_000_000)
    sh_degree: int = bounded(3, 0, 3)


class GaussianSplats(nn.Module):
    """N Gaussians; `active_sh_degree` (a buffer, saved with the weights) is the degree rendered now,
    raised during training up to `sh_degree`. Built from a `SplatsConfig` or keyword overrides of it."""

    name: ClassVar[str] = "splats"
    config_class: ClassVar[type[SplatsConfig]] = SplatsConfig

    def __init__(self, config: SplatsConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self._config = resolve_config(SplatsConfig, config, overrides)
        n, self.sh_degree = self._config.n, self._config.sh_degree
        self.register_buffer("aabb", torch.tensor(self._config.aabb, dtype=torch.float32))
        self.register_buffer("active_sh_degree", torch.zeros((), dtype=torch.long))
        k = (self.sh_degree + 1) ** 2
        self.means = nn.Parameter(torch.zeros(n, 3))
        self.log_scales = nn.Parameter(torch.full((n, 3), -4.0))
        self.quats = nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1))
        self.opacity_logits = nn.Parameter(torch.zeros(n))
        self.sh_dc = nn.Parameter(torch.zeros(n, 1, 3))
        self.sh_rest = nn.Parameter(torch.zeros(n, k - 1, 3))

    # ------------------------------------------------------------------ activations
    @property
    def n(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        """[N] opacity in (0, 1) of each Gaussian's peak (sigmoid of `opacity_logits`)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        """[N, K, 3] all SH coefficients (DC first)."""
        return torch.cat([self.sh_dc, self.sh_rest], dim=1)

    # ------------------------------------------------------------------ construction
    @torch.no_grad()
    def set_params(self, params: dict[str, Tensor]) -> GaussianSplats:
        """Replace all Gaussians from a splat_io-style dict (means, log_scales, quats wxyz,
        opacity_logits, sh [N,K',3]); SH bands beyond this model's degree are dropped, missing ones 0."""
        n = params["means"].shape[0]
        k = (self.sh_degree + 1) ** 2
        sh = params["sh"].reshape(n, -1, 3)
        full = sh.new_zeros(n, k, 3)
        m = min(k, sh.shape[1])
        full[:, :m] = sh[:, :m]
        for name, value in (
            ("means", params["means"].reshape(n, 3)),
            ("log_scales", params["log_scales"].reshape(n, 3)),
            ("quats", params["quats"].reshape(n, 4)),
            ("opacity_logits", params["opacity_logits"].reshape(n)),
            ("sh_dc", full[:, :1]),
            ("sh_rest", full[:, 1:]),
        ):
            setattr(self, name, nn.Parameter(value.detach().float().clone().contiguous()))
        return self

    def to_params(self) -> dict[str, Tensor]:
        """Detached copies in the splat_io layout (sh [N,K,3])."""
        return {
            "means": self.means.detach().clone(),
            "log_scales": self.log_scales.detach().clone(),
            "quats": self.quats.detach().clone(),
            "opacity_logits": self.opacity_logits.detach().clone(),
            "sh": self.sh.detach().clone(),
        }

    @torch.no_grad()
    def init_points(
        self,
        points: Tensor,
        colors: Tensor | None = None,
        opacity: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> GaussianSplats:
        """One isotropic Gaussian per point [N,3] (world), scale = mean distance to its 3 nearest
        neighbours (as 3DGS), random rotation, given opacity, colour [N,3] in [0,1] (grey if None)."""
        n = points.shape[0]
        if n == 0:
            raise ConfigError("cannot initialise splats from zero points")
        colors = torch.full((n, 3), 0.5) if colors is None else colors.float()
        q = torch.randn(n, 4, generator=generator)
        sh = torch.zeros(n, (self.sh_degree + 1) ** 2, 3)
        sh[:, 0] = rgb_to_sh_dc(colors.clamp(0, 1))
        logit = math.log(opacity / (1 - opacity))
        return self.set_params(
            {
                "means": points.float(),
                "log_scales": torch.log(knn_distance(points.float(), 3)).unsqueeze(-1).repeat(1, 3),
                "quats": q / q.norm(dim=-1, keepdim=True),
                "opacity_logits": torch.full((n,), logit),
                "sh": sh,
            }
        )

    def init_random(self, n: int, generator: torch.Generator | None = None, **kw: Any) -> GaussianSplats:
        """`n` Gaussians uniformly in the scene box with random colours (3DGS's synthetic-scene init)."""
        lo, hi = self.aabb[0], self.aabb[1]
        pts = lo + torch.rand(n, 3, generator=generator) * (hi - lo)
        return self.init_points(pts, torch.rand(n, 3, generator=generator), generator=generator, **kw)

    # ------------------------------------------------------------------ config / io
    @property
    def config(self) -> SplatsConfig:
        """The config of the current state (n = current number of Gaussians)."""
        return dataclasses.replace(self._config, n=self.n)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able config of the current state: {"field": "splats", "aabb": [[...], [...]], "n", "sh_degree"}."""
        return {"field": self.name, **jsonable(dataclasses.asdict(self.config))}

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> GaussianSplats:
        """Build from `to_dict` output; another field name, unknown keys or bad values raise ConfigError."""
        return cls(config_from_dict(SplatsConfig, cfg, cls.name))

    def prepare_state(self, tensors: dict[str, Tensor]) -> None:
        """Resize parameters to match a saved state dict (the count changes during training)."""
        for name in PARAM_NAMES:
            if name in tensors:
                setattr(self, name, nn.Parameter(torch.zeros_like(tensors[name])))

    def extra_repr(self) -> str:
        return f"n={self.n}, sh_degree={self.sh_degree}"


def knn_distance(points: Tensor, k: int = 3) -> Tensor:
    """Mean Euclidean distance [N] from each point [N,3] to its k nearest other points (k-d tree)."""
    from scipy.spatial import cKDTree

    n = points.shape[0]
    if n <= 1:
        return torch.full((n,), 0.01)
    k = min(k, n - 1)
    pts = points.detach().cpu().double().numpy()
    dist, _ = cKDTree(pts).query(pts, k=k + 1)
    return torch.from_numpy(dist[:, 1:].mean(-1)).float().clamp_min(1e-7)
