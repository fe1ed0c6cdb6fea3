"""Procedural street scenes with exact depth: a textured ground plane, building and car boxes and
poles (vertical cylinders), ray cast analytically.

World frame: metres, z up, the street runs along +x with its centre line at y = 0. Colours are linear
RGB. Rendered depth is z-depth along the camera's optical axis (metres, 0 where a ray sees sky or
passes ``max_depth``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ...cameras import Cameras, camera_rays

__all__ = ["StreetScene", "make_street", "render_street", "SKY"]

SKY = (0.55, 0.7, 0.9)
_SUN = (0.45, -0.35, 0.82)


@dataclass
class StreetScene:
    """boxes_lo/hi [K,3] axis-aligned boxes; box_color [K,3]; poles [P,4] (x, y, radius, height);
    pole_color [P,3]; ground_color [3]; seed of the texture noise."""

    boxes_lo: Tensor
    boxes_hi: Tensor
    box_color: Tensor
    poles: Tensor
    pole_color: Tensor
    ground_color: Tensor
    seed: int


def make_street(seed: int, length: float = 140.0) -> StreetScene:
    """A street from x = -10 to ``length``: rows of buildings at |y| in [7, 30] m, parked cars at
    |y| ~ 3-4 m, poles at |y| ~ 5 m, and a few cross walls far ahead, so that depths span ~2-80 m."""
    g = torch.Generator().manual_seed(seed)

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    lo, hi, col = [], [], []
    for side in (-1.0, 1.0):
        x = -10.0
        while x < length:
            w, d, h = u(6, 16), u(6, 14), u(5, 22)
            y0 = u(7, 12)
            y_in, y_out = side * y0, side * (y0 + d)
            lo.append([x, min(y_in, y_out), 0.0])
            hi.append([x + w, max(y_in, y_out), h])
            col.append([u(0.25, 0.8), u(0.2, 0.7), u(0.2, 0.6)])
            x += w + u(0.0, 4.0)
        x = u(0, 10)
        while x < length - 20:  # parked cars
            y = side * u(2.8, 3.6)
            lo.append([x, y - 0.9, 0.15])
            hi.append([x + u(3.8, 4.8), y + 0.9, u(1.3, 1.7)])
            col.append([u(0.1, 0.9), u(0.1, 0.9), u(0.1, 0.9)])
            x += u(8, 25)
    for _ in range(3):  # walls across the far end, partly blocking the view
        x, y = u(length * 0.55, length), u(-6, 6)
        lo.append([x, y - u(2, 5), 0.0])
        hi.append([x + 2.0, y + u(2, 5), u(3, 12)])
        col.append([u(0.3, 0.8), u(0.3, 0.8), u(0.3, 0.8)])
    poles, pcol = [], []
    for side in (-1.0, 1.0):
        x = u(0, 8)
        while x < length:
            poles.append([x, side * u(4.6, 5.4), u(0.12, 0.25), u(4, 7)])
            pcol.append([u(0.1, 0.5)] * 3)
            x += u(10, 20)
    return StreetScene(torch.tensor(lo), torch.tensor(hi), torch.tensor(col), torch.tensor(poles),
                       torch.tensor(pcol), torch.tensor([0.35, 0.35, 0.37]), seed)


def _hash(ix: Tensor, iy: Tensor, iz: Tensor, seed: int) -> Tensor:
    """Pseudo-random values in [0, 1) at integer lattice points (wrapping integer hash)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).float() / 65536.0


def value_noise(x: Tensor, seed: int) -> Tensor:
    """Trilinear value noise [M] in [0, 1) at points x [M,3] (lattice spacing 1)."""
    f = x.floor()
    w = x - f
    w = w * w * (3 - 2 * w)  # smoothstep
    i = f.long()
    out = torch.zeros(len(x))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                wt = ((w[:, 0] if dx else 1 - w[:, 0]) * (w[:, 1] if dy else 1 - w[:, 1])
                      * (w[:, 2] if dz else 1 - w[:, 2]))
                out += wt * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def _texture(x: Tensor, seed: int) -> Tensor:
    """Brightness factor [M] in ~[0.35, 1.25]: two octaves of noise (1 m and 0.25 m) on the surface."""
    n = 0.6 * value_noise(x, seed) + 0.4 * value_noise(4.0 * x, seed + 1)
    return 0.35 + 0.9 * n


def _nearest(t: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest distance [M] over the K objects of t [M,K] and its index (inf, 0 when K = 0)."""
    if t.shape[1] == 0:
        return torch.full((len(t),), math.inf), torch.zeros(len(t), dtype=torch.long)
    return t.min(dim=1)


def _pick(colors: Tensor, k: Tensor) -> Tensor:
    """colors[k] [M,3] (grey when there are no such objects)."""
    return colors.index_select(0, k) if len(colors) else torch.full((len(k), 3), 0.5)


def _cast(scene: StreetScene, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest hit of rays o, d [M,3]: distance t [M] (inf on a miss), albedo [M,3], normal [M,3]."""
    m = len(o)
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0 = (scene.boxes_lo[None] - o[:, None]) * inv[:, None]
    t1 = (scene.boxes_hi[None] - o[:, None]) * inv[:, None]
    near, axis = torch.minimum(t0, t1).max(dim=-1)
    far = torch.maximum(t0, t1).min(dim=-1).values
    near = torch.where((near <= far) & (near > 1e-4), near, math.inf)
    t_box, k_box = _nearest(near)
    ax = axis.gather(1, k_box[:, None]).squeeze(1) if axis.shape[1] else torch.zeros(m, dtype=torch.long)
    n_box = torch.zeros(m, 3)
    n_box.scatter_(1, ax[:, None], -torch.sign(d.gather(1, ax[:, None])))
    # poles: |(o + t d)_xy - c| = r with 0 <= z <= height
    c, r, ph = scene.poles[:, :2], scene.poles[:, 2], scene.poles[:, 3]
    oc = o[:, None, :2] - c[None]
    a = (d[:, None, :2] ** 2).sum(-1).clamp_min(1e-12)
    b = (oc * d[:, None, :2]).sum(-1)
    disc = b * b - a * ((oc**2).sum(-1) - r[None] ** 2)
    tp = (-b - disc.clamp_min(0).sqrt()) / a
    zp = o[:, None, 2] + tp * d[:, None, 2]
    tp = torch.where((disc > 0) & (tp > 1e-4) & (zp >= 0) & (zp <= ph[None]), tp, math.inf)
    t_pole, k_pole = _nearest(tp)
    t_gnd = torch.where(d[:, 2] < -1e-9, -o[:, 2] / d[:, 2].clamp_max(-1e-9), math.inf)
    t = torch.stack([t_gnd, t_box, t_pole], dim=1)
    t_hit, which = t.min(dim=1)
    x = o + t_hit.clamp_max(1e6)[:, None] * d
    n_pole = torch.cat([x[:, :2] - (c.index_select(0, k_pole) if len(c) else 0.0), torch.zeros(m, 1)], dim=1)
    n_pole = n_pole / n_pole.norm(dim=1, keepdim=True).clamp_min(1e-9)
    n_gnd = torch.tensor([0.0, 0.0, 1.0]).expand(m, 3)
    normal = torch.where((which == 0)[:, None], n_gnd, torch.where((which == 1)[:, None], n_box, n_pole))
    base = torch.where((which == 0)[:, None], scene.ground_color.expand(m, 3),
                       torch.where((which == 1)[:, None], _pick(scene.box_color, k_box),
                                   _pick(scene.pole_color, k_pole)))
    lane = ((which == 0) & (x[:, 1].abs() < 0.12) & (torch.remainder(x[:, 0], 6.0) < 3.0)).float()[:, None]
    albedo = (base * _texture(x, scene.seed)[:, None]) * (1 - lane) + 0.9 * lane
    return t_hit, albedo.clamp(0, 1), normal


def _corners(lo: Tensor, hi: Tensor) -> Tensor:
    """The 8 corners [K,8,3] of boxes lo, hi [K,3]."""
    pick = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.bool)
    return torch.where(pick[None], hi[:, None], lo[:, None])


def _cull(scene: StreetScene, c2w: Tensor) -> StreetScene:
    """The scene without the boxes and poles lying wholly behind the camera's image plane (invisible)."""
    eye, fwd = c2w[:3, 3], -c2w[:3, 2]

    def ahead(lo: Tensor, hi: Tensor) -> Tensor:
        return ((_corners(lo, hi) - eye) @ fwd).amax(dim=1) > 0.0

    keep_b = ahead(scene.boxes_lo, scene.boxes_hi)
    p = scene.poles
    zero = torch.zeros(len(p), 1)
    keep_p = ahead(torch.cat([p[:, :2] - p[:, 2:3], zero], 1), torch.cat([p[:, :2] + p[:, 2:3], p[:, 3:4]], 1))
    return StreetScene(scene.boxes_lo[keep_b], scene.boxes_hi[keep_b], scene.box_color[keep_b], p[keep_p],
                       scene.pole_color[keep_p], scene.ground_color, scene.seed)


def render_street(scene: StreetScene, cams: Cameras, i: int, supersample: int = 2, max_depth: float = 80.0,
                  with_depth: bool = True) -> tuple[Tensor, Tensor | None]:
    """Camera i: rgb [H,W,3] linear colour (sun + sky light, sky colour on misses, supersample^2 rays per
    pixel on a regular sub-pixel grid) and, with_depth, z-depth [H,W] in metres of the pixel-centre ray
    (0 for sky or beyond max_depth)."""
    h, w = cams.height, cams.width
    scene = _cull(scene, cams.c2w[i])
    iy, ix = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ix, iy = ix.reshape(-1), iy.reshape(-1)
    idx = torch.full((h * w,), i, dtype=torch.long)
    sun = torch.tensor(_SUN) / torch.tensor(_SUN).norm()
    depth = None
    if with_depth:
        o, d = camera_rays(cams, idx, ix + 0.5, iy + 0.5)
        z = _cast(scene, o, d)[0] * (d @ -cams.c2w[i, :3, 2])
        depth = torch.where(torch.isfinite(z) & (z <= max_depth), z, 0.0).reshape(h, w)
    rgb = torch.zeros(h * w, 3)
    offsets = [(a + 0.5) / supersample for a in range(supersample)]
    for ox in offsets:
        for oy in offsets:
            o, d = camera_rays(cams, idx, ix + ox, iy + oy)
            t, albedo, normal = _cast(scene, o, d)
            light = 0.35 + 0.75 * (normal @ sun).clamp_min(0)
            rgb += torch.where(torch.isfinite(t)[:, None], albedo * light[:, None], torch.tensor(SKY))
    return (rgb / supersample**2).clamp(0, 1).reshape(h, w, 3), depth
