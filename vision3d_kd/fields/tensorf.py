"""TensoRF fields (Chen et al. 2022): low-rank tensor decompositions of a density grid and an
appearance-feature grid, a linear basis from the appearance components to `geo_features` features (the
PVD block width; persisted as `app_dim` before) and the shared view-dependent colour head.

Box coordinates n = normalize(x) * 2 - 1 lie in [-1, 1]^3. Grids are channels-last and sampled with
align_corners=True semantics, so upsampling by (bi)linear resampling keeps the represented function.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import bounded, schedule_option
from ..kernels import sample_lines, sample_planes
from .base import ColorHeadConfig, Field, log_scaled_softplus

__all__ = ["TensoRFVM", "TensoRFCP", "TensoRFConfig", "TensoRFCPConfig", "resample_planes", "resample_lines"]

# VM pairs: plane over axes (a, b) with the line along the remaining axis.
_PLANE_AXES = ((0, 1), (0, 2), (1, 2))
_LINE_AXES = (2, 1, 0)
_MAX_RES = 4096


def resample_planes(planes: Tensor, resolution: int) -> Tensor:
    """planes: [P, H, W, C] -> [P, resolution, resolution, C], bilinear with align_corners=True."""
    size = (resolution, resolution)
    out = F.interpolate(planes.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=True)
    return out.permute(0, 2, 3, 1).contiguous()


def resample_lines(lines: Tensor, resolution: int) -> Tensor:
    """lines: [P, L, C] -> [P, resolution, C], linear with align_corners=True."""
    out = F.interpolate(lines.permute(0, 2, 1), size=resolution, mode="linear", align_corners=True)
    return out.permute(0, 2, 1).contiguous()


def _tv(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Mean squared finite difference of `t` along each of `dims`, summed over dims."""
    return sum((t.diff(dim=dim) ** 2).mean() for dim in dims)  # type: ignore[return-value]


@dataclass
class TensoRFConfig(ColorHeadConfig):
    """Options of `TensoRFVM` (and, with other defaults, `TensoRFCP`): factor `resolution` (cells per box
    side) grown by the `upsample` schedule of [step, resolution] pairs; `n_density` density and `n_app`
    appearance components per factor; sigma = density_scale * softplus(sum + density_shift); L1 / TV
    weights on the density factors; the basis and colour MLP learn at lr * mlp_lr_factor."""

    renamed: ClassVar[dict[str, str]] = {"app_dim": "geo_features"}

    resolution: int = bounded(64, 2, _MAX_RES)
    upsample: tuple[tuple[int, int], ...] = schedule_option(
        ((300, 96), (600, 128), (900, 160), (1200, 200)), lo=2, hi=_MAX_RES, what="resolution")
    n_density: int = bounded(16, 1, 4096)
    n_app: int = bounded(48, 1, 4096)
    init_scale: float = bounded(0.1, lo=0.0)
    density_shift: float = -10.0
    density_scale: float = bounded(25.0, lo=0.0)
    l1_weight: float = bounded(8e-5, lo=0.0)
    tv_weight: float = bounded(0.0, lo=0.0)
    mlp_lr_factor: float = bounded(0.05, lo=0.0)


@dataclass
class TensoRFCPConfig(TensoRFConfig):
    """Options of `TensoRFCP`: those of `TensoRFConfig`, with more (rank-1) components by default."""

    upsample: tuple[tuple[int, int], ...] = schedule_option(
        ((300, 128), (600, 256), (900, 384), (1200, 500)), lo=2, hi=_MAX_RES, what="resolution")
    n_density: int = bounded(96, 1, 4096)
    n_app: int = bounded(288, 1, 4096)
    init_scale: float = bounded(0.2, lo=0.0)
    l1_weight: float = bounded(1e-5, lo=0.0)


class _TensoRF(Field):
    """Shared heads, schedule and regularisation; subclasses supply the factor tensors.

    encode: [N, 3] world -> [N, D + G]: D per-component density values, then basis(app) features (G =
    geo_features).
    density_head: sigma = density_scale * softplus(sum(components) + density_shift) (1/scene-unit).
    color_head: the shared design, [f, SH(d, sh_degree)] -> MLP -> sigmoid rgb.
    """

    config: TensoRFConfig
    n_density_columns: int  # D: width of the density part of `encode`

    def _common(self, app_planes: int) -> None:
        """Build the basis and colour MLP. `app_planes`: how many n_app-wide appearance blocks feed the
        basis (3 for VM, 1 for CP)."""
        c = self.config
        self.basis = nn.Linear(c.n_app * app_planes, c.geo_features, bias=False)
        self._init_color_head(c)

    # subclass hooks -----------------------------------------------------------------------------
    def _density_components(self, n: Tensor) -> Tensor:
        """n: [N, 3] in [-1, 1] -> per-component density values [N, D]."""
        raise NotImplementedError

    def _app_components(self, n: Tensor) -> Tensor:
        """n: [N, 3] in [-1, 1] -> appearance components [N, A] (before the basis)."""
        raise NotImplementedError

    def _density_factors(self) -> list[Tensor]:
        """The density factor tensors (for L1 / TV)."""
        raise NotImplementedError

    def _resample(self, resolution: int) -> None:
        """Replace every factor parameter by its resampling at `resolution`."""
        raise NotImplementedError

    def _tv_density(self) -> Tensor:
        raise NotImplementedError

    # Field API ------------------------------------------------------------------------------------
    def _coords(self, x: Tensor) -> Tensor:
        return self.normalize(x) * 2.0 - 1.0

    def encode(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> [N, D + G] (density components, then geometry features)."""
        n = self._coords(x)
        return torch.cat([self._density_components(n), self.basis(self._app_components(n))], dim=-1)

    def _sigma(self, components: Tensor) -> Tensor:
        raw = components.sum(dim=-1) + self.config.density_shift
        return self.config.density_scale * F.softplus(raw)

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, D + G] -> log sigma [N] (sigma in 1/scene-unit), geo [N, G]."""
        d_cols, c = self.n_density_columns, self.config
        raw = feat[:, :d_cols].sum(dim=-1) + c.density_shift
        return log_scaled_softplus(raw, c.density_scale), feat[:, d_cols:]

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, D + G] -> sigma [N] (1/scene-unit), geo [N, G]."""
        d_cols = self.n_density_columns
        return self._sigma(feat[:, :d_cols]), feat[:, d_cols:]

    def density(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> sigma [N]; samples only the density factors."""
        return self._sigma(self._density_components(self._coords(x)))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Factor tensors at `lr`; basis matrix and colour MLP at `lr * mlp_lr_factor`."""
        nets = list(self.basis.parameters()) + list(self.color_net.parameters())
        net_ids = {id(p) for p in nets}
        grids = [p for p in self.parameters() if id(p) not in net_ids]
        return [{"params": grids, "lr": lr}, {"params": nets, "lr": lr * self.config.mlp_lr_factor}]

    def on_step(self, step: int) -> bool:
        """Upsample to the largest scheduled resolution with step <= `step` (never downsamples)."""
        target = max((res for s, res in self.config.upsample if s <= step), default=0)
        if target <= self.config.resolution:
            return False
        with torch.no_grad():
            self._resample(target)
        self.config = dataclasses.replace(self.config, resolution=target)
        return True

    def regularization(self) -> Tensor:
        """l1_weight * sum of mean |density factor| + tv_weight * TV of the density factors."""
        c = self.config
        loss = self.aabb.new_zeros(())
        if c.l1_weight > 0:
            loss = loss + c.l1_weight * sum(t.abs().mean() for t in self._density_factors())
        if c.tv_weight > 0:
            loss = loss + c.tv_weight * self._tv_density()
        return loss


def _factor(shape: tuple[int, ...], scale: float) -> nn.Parameter:
    return nn.Parameter(scale * torch.randn(shape))


class TensoRFVM(_TensoRF):
    """Vector-matrix decomposition: per axis pair, `n_density` / `n_app` plane x line components.

    Factors: density_planes [3, R, R, n_density], density_lines [3, R, n_density] and the same for
    appearance with n_app channels (R = resolution). Plane p spans axes _PLANE_AXES[p] (u = first
    axis along W, v = second along H); its line runs along _LINE_AXES[p].
    """

    name = "tensorf-vm"
    config_class = TensoRFConfig

    def __init__(self, config: TensoRFConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._common(app_planes=3)
        c = self.config
        r, s, nd, na = c.resolution, c.init_scale, c.n_density, c.n_app
        self.n_density_columns = 3 * nd
        self.density_planes = _factor((3, r, r, nd), s)
        self.density_lines = _factor((3, r, nd), s)
        self.app_planes = _factor((3, r, r, na), s)
        self.app_lines = _factor((3, r, na), s)

    @staticmethod
    def _uv_t(n: Tensor) -> tuple[Tensor, Tensor]:
        uv = torch.stack([n[:, list(ab)] for ab in _PLANE_AXES])  # [3, N, 2]
        t = torch.stack([n[:, ax] for ax in _LINE_AXES])  # [3, N]
        return uv, t

    def _vm(self, planes: Tensor, lines: Tensor, n: Tensor) -> Tensor:
        uv, t = self._uv_t(n)
        prod = sample_planes(planes, uv) * sample_lines(lines, t)  # [3, N, C]
        return prod.permute(1, 0, 2).reshape(n.shape[0], -1)  # [N, 3C], plane-major

    def _density_components(self, n: Tensor) -> Tensor:
        return self._vm(self.density_planes, self.density_lines, n)

    def _app_components(self, n: Tensor) -> Tensor:
        return self._vm(self.app_planes, self.app_lines, n)

    def _density_factors(self) -> list[Tensor]:
        return [self.density_planes, self.density_lines]

    def _tv_density(self) -> Tensor:
        return _tv(self.density_planes, (1, 2)) + _tv(self.density_lines, (1,))

    def _resample(self, resolution: int) -> None:
        for key in ("density_planes", "app_planes"):
            setattr(self, key, nn.Parameter(resample_planes(getattr(self, key).detach(), resolution)))
        for key in ("density_lines", "app_lines"):
            setattr(self, key, nn.Parameter(resample_lines(getattr(self, key).detach(), resolution)))


class TensoRFCP(_TensoRF):
    """CANDECOMP/PARAFAC decomposition: components are products of three axis vectors.

    Factors: density_lines [3, R, n_density], app_lines [3, R, n_app] (line p runs along axis p).
    """

    name = "tensorf-cp"
    config_class = TensoRFCPConfig

    def __init__(self, config: TensoRFCPConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._common(app_planes=1)
        c = self.config
        self.n_density_columns = c.n_density
        self.density_lines = _factor((3, c.resolution, c.n_density), c.init_scale)
        self.app_lines = _factor((3, c.resolution, c.n_app), c.init_scale)

    @staticmethod
    def _cp(lines: Tensor, n: Tensor) -> Tensor:
        vx, vy, vz = sample_lines(lines, n.t()).unbind(0)  # 3 x [N, C]; unbind: one stacked backward
        return vx * vy * vz

    def _density_components(self, n: Tensor) -> Tensor:
        return self._cp(self.density_lines, n)

    def _app_components(self, n: Tensor) -> Tensor:
        return self._cp(self.app_lines, n)

    def _density_factors(self) -> list[Tensor]:
        return [self.density_lines]

    def _tv_density(self) -> Tensor:
        return _tv(self.density_lines, (1,))

    def _resample(self, resolution: int) -> None:
        for key in ("density_lines", "app_lines"):
            setattr(self, key, nn.Parameter(resample_lines(getattr(self, key).detach(), resolution)))
