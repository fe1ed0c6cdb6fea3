"""Vanilla NeRF field: frequency encoding -> ReLU MLP trunk with a skip connection -> density and
geometry features -> small view-dependent colour MLP. Defaults are sized for CPU training."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import BLOCK_GEO_FEATURES, DEFAULT_AABB, Field, check_choice, check_float, check_int
from .encodings import log_softplus, positional_encoding, positional_encoding_dim
from .precision import PRECISIONS, run_in_precision

__all__ = ["MLPField"]


class MLPField(Field):
    """NeRF MLP (Mildenhall et al. 2020) at CPU size.

    encode: box coords mapped to [-1, 1]^3 -> frequency encoding [N, 3 * (2 * xyz_freqs + 1)].
    density_head: `depth` ReLU layers of `width` (input re-concatenated before layer `skip`) ->
    sigma = softplus(raw + density_shift) [N] and `geo_features` [N, G].
    color_head: the shared design, [geo, SH(d, sh_degree)] -> `color_layers` x `color_hidden` -> sigmoid.
    precision: 'auto' computes the layers in bf16 on CPUs with AMX (see fields/precision.py).
    """

    name = "mlp"

    def __init__(
        self,
        *,
        aabb: Any = DEFAULT_AABB,
        xyz_freqs: int = 10,
        width: int = 128,
        depth: int = 4,
        skip: int = 2,
        geo_features: int = BLOCK_GEO_FEATURES,
        color_hidden: int = 64,
        color_layers: int = 2,
        sh_degree: int = 4,
        density_shift: float = -1.0,
        precision: str = "auto",
    ) -> None:
        super().__init__(aabb)
        xyz_freqs = check_int("xyz_freqs", xyz_freqs, 0, 16)
        width = check_int("width", width, 1, 4096)
        depth = check_int("depth", depth, 1, 32)
        skip = check_int("skip", skip, 0, 32)  # 0 or >= depth: no skip connection
        geo_features = check_int("geo_features", geo_features, 1, 4096)
        color_hidden = check_int("color_hidden", color_hidden, 1, 4096)
        color_layers = check_int("color_layers", color_layers, 0, 16)
        sh_degree = check_int("sh_degree", sh_degree, 1, 4)
        density_shift = check_float("density_shift", density_shift)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.config = dict(
            xyz_freqs=xyz_freqs,
            width=width,
            depth=depth,
            skip=skip,
            geo_features=geo_features,
            color_hidden=color_hidden,
            color_layers=color_layers,
            sh_degree=sh_degree,
            density_shift=density_shift,
            precision=self.precision,
        )
        self.xyz_freqs = xyz_freqs
        self.skip = skip if 0 < skip < depth else -1
        self.density_shift = density_shift
        enc_dim = positional_encoding_dim(3, xyz_freqs)
        self.trunk = nn.ModuleList(
            nn.Linear((enc_dim if i == 0 else width) + (enc_dim if i == self.skip else 0), width) for i in range(depth)
        )
        self.density_out = nn.Linear(width, 1 + geo_features)
        self._init_color_head(geo_features, color_hidden, color_layers, sh_degree)

    def encode(self, x: Tensor) -> Tensor:
        """x: [N, 3] world -> [N, 3 * (2 * xyz_freqs + 1)] frequency features of coords in [-1, 1]."""
        return positional_encoding(self.normalize(x) * 2.0 - 1.0, self.xyz_freqs)

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, E] -> log sigma [N] (sigma in 1/scene-unit), geo [N, geo_features]."""
        out = run_in_precision(self.precision, self._trunk, feat)
        return log_softplus(out[:, 0].float() + self.density_shift), out[:, 1:]

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, E] -> sigma [N] (1/scene-unit), geo [N, geo_features]."""
        out = run_in_precision(self.precision, self._trunk, feat)
        return F.softplus(out[:, 0] + self.density_shift), out[:, 1:]

    def color_from_dirs(self, geo: Tensor, d_enc: Tensor) -> Tensor:
        """geo: [N, G], encoded directions [N, K] -> rgb [N, 3] in [0, 1]."""
        return run_in_precision(self.precision, self.color_net, torch.cat([geo, d_enc], dim=-1))

    def _trunk(self, feat: Tensor) -> Tensor:
        """[N, E] encoded points -> raw [N, 1 + geo_features] (density logit, geometry features)."""
        h = feat
        for i, layer in enumerate(self.trunk):
            if i == self.skip:
                h = torch.cat([h, feat], dim=-1)
            h = F.relu(layer(h))
        return self.density_out(h)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """One group at `lr` (all parameters are network weights)."""
        return [{"params": list(self.parameters()), "lr": lr}]
