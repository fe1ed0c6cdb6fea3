"""Instant-NGP field: multiresolution hash encoding -> tiny density MLP -> SH-conditioned colour MLP.

With `box_tables` (a LucidDreaming layout's boxes, world units) a point inside box k looks its features up
in a hash table of its own (the first box holding it wins; points outside every box use the main table),
and the encoding ends in a one-hot of that table (K + 1 columns after the L·F hash features), so the density
MLP knows which object a point belongs to and objects in one field share no hash entries. With `box_heads`
as well, each table has a colour head of its own: the geometry features carry the one-hot on (G + K + 1
columns) and pick the head, so no object's colours are learnt from another's samples (bench/TUNING.md: a
shared colour head learnt one map from density to colour for the whole scene, so a white object's dense
points came out its neighbours' colours, with or without box tables). With `box_density_heads` each table
has a density MLP of its own too (it reads the L·F features alone; the one-hot only routes), so no two
objects share a parameter. Every table has `2^log2_table_size` rows; box table k's level resolutions are
the main table's base and max resolutions times `box_resolution_scale[k]` (all 1 when it is empty), so a
large object's table can be as coarse in its own frame as a lone object's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import bounded
from ..errors import ConfigError
from ..kernels import hash_encode
from .base import ColorHeadConfig, Field, points_in_boxes
from .encodings import mlp, trunc_exp

__all__ = ["HashGridField", "HashGridConfig", "level_resolutions"]


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> Tensor:
    """Per-level grid resolutions [L] int32 (CPU), geometric from base to max (Instant-NGP eq. 2-3)."""
    if n_levels == 1:
        return torch.tensor([base_resolution], dtype=torch.int32)
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    res = [int(math.floor(base_resolution * growth**level + 1e-6)) for level in range(n_levels)]
    return torch.tensor(res, dtype=torch.int32)


@dataclass
class HashGridConfig(ColorHeadConfig):
    """Options of `HashGridField`. Resolutions are grid cells per box side; `n_features` is the width of
    each hash level's feature (the encoding is n_levels * n_features wide), not the geo block width
    `geo_features`."""

    n_levels: int = bounded(16, 1, 32)
    n_features: int = bounded(2, 1, 16)
    log2_table_size: int = bounded(19, 4, 26)
    base_resolution: int = bounded(16, 1, 1 << 16)
    max_resolution: int = bounded(1024, lo=lambda c: c.base_resolution, hi=1 << 16)
    init_scale: float = bounded(1e-4, lo=0.0)  # hash entries start uniform in [-init_scale, init_scale]
    hidden: int = bounded(64, 1, 4096)  # width of the density MLP's hidden layer
    mlp_weight_decay: float = bounded(1e-6, lo=0.0)
    box_tables: list[list[float]] = dataclasses.field(default_factory=list)  # [xmin,ymin,zmin,xmax,ymax,zmax]
    box_heads: bool = False  # with box_tables: a colour head per table (module docstring)
    box_density_heads: bool = False  # with box_tables: a density MLP per table (module docstring)
    box_resolution_scale: list[float] = dataclasses.field(default_factory=list)  # per box table; [] = all 1


def by_table(idx: Tensor, n: int, inp: Tensor, fn: Callable[[int, Tensor], Tensor]) -> Tensor:
    """fn(k, rows of `inp` whose idx [N] is k) for each k < n, put back in row order: [N, ...]. One call when
    every row has the same k (clipped rays: every sample in one box)."""
    if inp.shape[0] == 0 or bool((idx == idx[0]).all()):
        return fn(int(idx[0]) if inp.shape[0] else 0, inp)
    rows = [(idx == k).nonzero().squeeze(1) for k in range(n)]  # a counting sort: 3x a stable argsort's speed
    parts = [fn(k, inp.index_select(0, r)) for k, r in enumerate(rows) if len(r)]
    order = torch.cat(rows)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)  # a scatter: 10x a second argsort's speed
    return torch.cat(parts).index_select(0, inverse)


class HashGridField(Field):
    """Instant-NGP (Mueller et al. 2022).

    encode: box coords [0, 1]^3 -> hash features [N, n_levels * n_features] (level-major).
    density_head: 1 hidden layer of `hidden` -> raw [N, 1 + geo_features];
    sigma = trunc_exp(raw[:, 0]) (1/scene-unit), geo = raw[:, 1:].
    color_head: [geo, SH(d, degree sh_degree)] -> 2 hidden layers of `color_hidden` -> sigmoid rgb.
    """

    name = "hashgrid"
    config_class = HashGridConfig
    config: HashGridConfig

    def __init__(self, config: HashGridConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.mlp_weight_decay = c.mlp_weight_decay
        # Plain attribute, not a buffer: the kernel wants it as int32 on the CPU whatever the device.
        self.resolutions = level_resolutions(c.n_levels, c.base_resolution, c.max_resolution)
        boxes = torch.tensor(c.box_tables, dtype=torch.float32).reshape(-1, 6)
        if len(boxes) and not (boxes[:, 3:] > boxes[:, :3]).all():
            raise ConfigError("field.box_tables: every box needs max > min on each axis")
        self.register_buffer("boxes", boxes, persistent=False)
        scales = list(c.box_resolution_scale) or [1.0] * len(boxes)
        if len(scales) != len(boxes) or not all(math.isfinite(f) and f > 0 for f in scales):
            raise ConfigError(f"field.box_resolution_scale: one positive factor per box table ({len(boxes)}), "
                              f"got {c.box_resolution_scale}")
        # per table (main first): the kernel's int32 level resolutions, the same object when a factor is 1
        self.table_resolutions = [self.resolutions] + [
            self.resolutions if f == 1.0 else level_resolutions(
                c.n_levels, max(1, round(c.base_resolution * f)), max(1, round(c.max_resolution * f)))
            for f in scales]
        shape = (c.n_levels, 1 << c.log2_table_size, c.n_features)
        self.table = nn.Parameter(torch.empty(shape).uniform_(-c.init_scale, c.init_scale))
        self.box_tables = nn.ParameterList(nn.Parameter(torch.empty(shape).uniform_(-c.init_scale, c.init_scale))
                                           for _ in range(len(boxes)))
        self.n_codes = len(boxes) + 1 if len(boxes) else 0  # the one-hot of the table a point reads
        own = bool(c.box_density_heads and len(boxes))  # per-table density MLPs read the hash features alone
        n_in = c.n_levels * c.n_features + (0 if own else self.n_codes)
        self.density_net = mlp(n_in, c.hidden, 1, 1 + c.geo_features)
        self.box_density_nets = nn.ModuleList(mlp(n_in, c.hidden, 1, 1 + c.geo_features)
                                              for _ in range(len(boxes) if own else 0))
        self._init_color_head(c)
        self.box_heads = bool(c.box_heads and len(boxes))
        self.box_color_nets = nn.ModuleList(self._color_mlp(c) for _ in range(len(boxes) if self.box_heads else 0))
        if self.box_heads:
            self.geo_features = c.geo_features + self.n_codes  # geo carries the one-hot to the colour heads

    def tables(self) -> list[Tensor]:
        """The main table, then one per box of `box_tables` (each [L, T, F])."""
        return [self.table, *self.box_tables]

    def table_index(self, x: Tensor, inside: Tensor | None = None) -> Tensor:
        """[N] long: 0 for world points x [N, 3] outside every box, else 1 + the first box holding them
        (`inside` [N, K]: `points_in_boxes(x, boxes)` when the caller has it already)."""
        inside = points_in_boxes(x, self.boxes) if inside is None else inside
        first = inside.to(torch.uint8).argmax(dim=1)  # argmax returns the first of equal maxima
        return torch.where(inside.any(dim=1), first + 1, 0)

    def encode(self, x: Tensor, inside: Tensor | None = None, levels: int | None = None) -> Tensor:
        """x: [N, 3] world -> [N, n_levels * n_features] interpolated hash-table features; with box tables each
        point's from its own table, followed by that table's one-hot [N, K + 1] (module docstring; `inside` as
        in `table_index`; `levels`: only the first `levels` levels are looked up, the rest read 0)."""
        u = self.normalize(x)
        if not len(self.box_tables):
            return hash_encode(u, self.table, self.resolutions, levels=levels)
        tables = self.tables()
        idx = self.table_index(x.detach(), inside)
        if len(idx) and bool((idx == idx[0]).all()):  # clipped rays: one table, its one-hot written beside
            code = F.one_hot(idx[0], len(tables)).to(u.dtype)
            return hash_encode(u, tables[int(idx[0])], self.table_resolutions[int(idx[0])], code, levels)
        code = F.one_hot(idx, len(tables)).to(u.dtype)
        feat = by_table(idx, len(tables), u,
                        lambda k, chunk: hash_encode(chunk, tables[k], self.table_resolutions[k], levels=levels))
        return torch.cat([feat, code], dim=1)

    def _raw(self, feat: Tensor) -> Tensor:
        """The density MLP's raw output [N, 1 + geo_features] for feat [N, L*F] (+ the box one-hot); with
        `box_density_heads` each row from its table's MLP."""
        if not len(self.box_density_nets):
            return self.density_net(feat)
        nets = [self.density_net, *self.box_density_nets]
        hashed = feat[:, :-self.n_codes]
        return by_table(feat[:, -self.n_codes:].argmax(dim=1), len(nets), hashed, lambda k, chunk: nets[k](chunk))

    def log_density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, L*F] (+ the box one-hot) -> log sigma [N] (the raw output), geo [N, geo_features]
        (with `box_heads`, the one-hot is geo's last K + 1 columns; with `box_density_heads` it picks the MLP)."""
        raw = self._raw(feat)
        geo = torch.cat([raw[:, 1:], feat[:, -self.n_codes:]], dim=1) if self.box_heads else raw[:, 1:]
        return raw[:, 0], geo

    def log_density(self, feat: Tensor) -> Tensor:
        """log sigma [N] alone (no geometry features: the density-only passes skip their copy)."""
        return self._raw(feat)[:, 0]

    def density_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """feat: [N, L*F] (+ the box one-hot) -> sigma [N] (1/scene-unit), geo [N, geo_features]."""
        log_sigma, geo = self.log_density_head(feat)
        return trunc_exp(log_sigma), geo

    def color_from_dirs(self, geo: Tensor, d_enc: Tensor) -> Tensor:
        """geo [N, geo_features] and encoded directions [N, K] -> rgb [N, 3] in [0, 1]; with `box_heads` from
        the colour head of the table named by geo's one-hot (its last K + 1 columns)."""
        if not self.box_heads:
            return super().color_from_dirs(geo, d_enc)
        heads = [self.color_net, *self.box_color_nets]
        inp = torch.cat([geo[:, :-self.n_codes], d_enc], dim=-1)
        return by_table(geo[:, -self.n_codes:].argmax(dim=1), len(heads), inp, lambda k, chunk: heads[k](chunk))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Hash tables at `lr` without decay; the MLPs at `lr` with weight decay `mlp_weight_decay`."""
        nets = [p for net in (self.density_net, self.box_density_nets, self.color_net, self.box_color_nets)
                for p in net.parameters()]
        return [
            {"params": self.tables(), "lr": lr, "weight_decay": 0.0},
            {"params": nets, "lr": lr, "weight_decay": self.mlp_weight_decay},
        ]
