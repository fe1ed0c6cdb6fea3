"""A textured room around a procedural object: the background of a simulated handheld capture.

The room is the inside of an axis-aligned box (world units, z up, floor under the object). Its walls,
floor and ceiling carry procedural albedo textures of mid frequency (value-noise blobs, tiles and
stripes with varying colours, features of roughly 0.3-1 world units), rich enough for SIFT matching and
smooth enough for a radiance field to learn. Shading stays Lambertian (`procedural.Shading`), so the
radiance is view-independent. The object keeps its SDF colours, modulated by a mild 3D noise texture.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..kernels.march_ref import ray_aabb
from .procedural import sphere_trace
from .sdf import SDFScene

__all__ = ["value_noise", "Room", "CaptureScene"]

Vec3 = tuple[float, float, float]
_MASK = 0xFFFFFFFF


def _hash01(cells: Tensor, seed: int) -> Tensor:
    """Pseudo-random values [N] in [0, 1) from integer lattice cells [N, D] (int64) and a seed."""
    h = torch.full((len(cells),), (seed * 0x9E3779B1 + 0x7F4A7C15) & _MASK, dtype=torch.int64)
    for k in range(cells.shape[1]):
        h = ((h ^ (cells[:, k] & _MASK)) * 0x85EBCA6B) & _MASK  # low 32 bits survive int64 wrap-around
        h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & _MASK
    h = h ^ (h >> 16)
    return h.to(torch.float64) / float(1 << 32)


def value_noise(p: Tensor, seed: int) -> Tensor:
    """Smooth value noise [N] in [0, 1] at points p [N, D] (one lattice cell per unit), C1 continuous."""
    cell = torch.floor(p)
    f = p - cell
    w = f * f * (3.0 - 2.0 * f)  # smoothstep weights
    cell = cell.to(torch.int64)
    out = torch.zeros(len(p), dtype=p.dtype)
    for corner in itertools.product((0, 1), repeat=p.shape[1]):
        c = torch.tensor(corner, dtype=torch.int64)
        weight = torch.where(c.bool(), w, 1.0 - w).prod(dim=-1)
        out = out + weight * _hash01(cell + c, seed).to(p.dtype)
    return out


def _mix(a: Tensor, b: Tensor, s: Tensor) -> Tensor:
    """Per-row blend of colours a, b [N, 3] (or [3]) by s [N]."""
    return a + (b - a) * s[:, None]


def _palette_colour(u: Tensor, seed: int) -> Tensor:
    """A saturated-but-not-extreme colour [N, 3] in [0.15, 0.9] for each hash value u [N] (cells, bands)."""
    cells = (u * 1e6).to(torch.int64)[:, None]
    rgb = torch.stack([_hash01(cells, seed + k) for k in range(3)], dim=-1).to(u.dtype)
    return 0.15 + 0.75 * rgb


def _soft_step(v: Tensor, edge: float) -> Tensor:
    """0 below -edge/2, 1 above +edge/2, linear between: an anti-aliasable step of width ``edge``."""
    return (v / edge + 0.5).clamp(0.0, 1.0)


def _dots(uv: Tensor, spacing: float, seed: int) -> tuple[Tensor, Tensor]:
    """Scattered discs, at most one per ``spacing`` cell: (coverage [N] in [0, 1], colour [N, 3]).

    Each cell holds a disc with probability ~0.7, at a hashed position, radius 0.1-0.2 ``spacing`` and a
    hashed colour; blob-like features of a few pixels, what SIFT's detector finds best.
    """
    cell = torch.floor(uv / spacing)
    ci = cell.to(torch.int64)
    h = [_hash01(ci, seed + k).to(uv.dtype) for k in range(4)]
    centre = (cell + 0.3 + 0.4 * torch.stack([h[0], h[1]], dim=-1)) * spacing
    radius = spacing * (0.1 + 0.1 * h[2])
    coverage = _soft_step(radius - (uv - centre).norm(dim=-1), 0.03) * (h[3] > 0.3).to(uv.dtype)
    return coverage, _palette_colour(h[3], seed + 50)


def _blobs(uv: Tensor, seed: int) -> Tensor:
    """Wall texture [N, 3]: camouflage regions (~1 unit) of three hashed colours, mottled, with dots."""
    n1, n2 = value_noise(uv / 1.1, seed), value_noise(uv / 0.8 + 31.0, seed + 1)
    base = _palette_colour(torch.full_like(n1, 0.1), seed + 2)
    second = _palette_colour(torch.full_like(n1, 0.2), seed + 3)
    third = _palette_colour(torch.full_like(n1, 0.3), seed + 4)
    colour = _mix(base, second, _soft_step(n1 - 0.5, 0.06))
    colour = _mix(colour, third, _soft_step(n2 - 0.62, 0.06))
    colour = colour * (0.75 + 0.35 * value_noise(uv / 0.3, seed + 7))[:, None]
    cover, dot = _dots(uv, 0.7, seed + 8)
    return _mix(colour, dot, cover)


def _tiles(uv: Tensor, seed: int, size: float = 0.8) -> Tensor:
    """Floor texture [N, 3]: tiles of ``size`` units with hashed colours, dark soft grout, mottled, dots."""
    cell = torch.floor(uv / size)
    colour = _palette_colour(_hash01(cell.to(torch.int64), seed), seed + 11)
    f = uv / size - cell
    edge = torch.minimum(f, 1.0 - f).amin(dim=-1) * size  # distance to the nearest grout line (units)
    mottle = 0.75 + 0.35 * value_noise(uv / 0.3, seed + 3)
    colour = colour * mottle[:, None]
    cover, dot = _dots(uv, size, seed + 4)
    colour = _mix(colour, dot, cover)
    return _mix(torch.tensor([0.12, 0.11, 0.1], dtype=uv.dtype), colour, _soft_step(edge - 0.05, 0.04))


def _stripes(uv: Tensor, seed: int, width: float = 0.6) -> Tensor:
    """Ceiling texture [N, 3]: wavy stripes of ``width`` units with hashed colours, noise and dots."""
    s = uv[:, 0] + 0.3 * torch.sin(uv[:, 1] * 1.7) + 0.4 * value_noise(uv / 1.5, seed + 5)
    band = torch.floor(s / width)
    colour = _palette_colour(_hash01(band.to(torch.int64)[:, None], seed), seed + 13)
    colour = colour * (0.75 + 0.35 * value_noise(uv / 0.4, seed + 9))[:, None]
    cover, dot = _dots(uv, 0.9, seed + 6)
    return _mix(colour, dot, cover)


@dataclass(frozen=True)
class Room:
    """The inside of the box ``center`` +- ``half_size`` (world units); textures seeded by ``seed``.

    Faces are numbered ``2 * axis + (side > 0)``: 0/1 the x walls, 2/3 the y walls, 4 floor, 5 ceiling.
    """

    center: Vec3 = (0.0, 0.0, 2.0)
    half_size: Vec3 = (5.5, 5.5, 3.0)
    seed: int = 0
    kind: str = field(default="room", init=False)

    def _local(self, x: Tensor) -> Tensor:
        return x - torch.tensor(self.center, dtype=x.dtype)

    def sdf(self, x: Tensor) -> Tensor:
        """Exact signed distance [N] to the room's surface at x [N, 3]: positive inside the room."""
        q = self._local(x).abs() - torch.tensor(self.half_size, dtype=x.dtype)
        inside = torch.maximum(torch.maximum(q[:, 0], q[:, 1]), q[:, 2]).clamp_max(0.0)
        return -(q.clamp_min(0.0).norm(dim=-1) + inside)

    def face(self, x: Tensor) -> Tensor:
        """Index [N] (see class doc) of the face nearest to points x [N, 3] inside the room."""
        p = self._local(x)
        gap = torch.tensor(self.half_size, dtype=x.dtype) - p.abs()
        axis = gap.argmin(dim=-1)
        side = p.gather(1, axis[:, None])[:, 0] > 0
        return 2 * axis + side.long()

    def normal(self, x: Tensor) -> Tensor:
        """Unit inward normals [N, 3] of the nearest face at x [N, 3] (pointing into the room)."""
        f = self.face(x)
        n = torch.zeros(len(x), 3, dtype=x.dtype)
        n.scatter_(1, (f // 2)[:, None], torch.where(f % 2 == 1, -1.0, 1.0).to(x.dtype)[:, None])
        return n

    def exit_distance(self, rays_o: Tensor, rays_d: Tensor) -> Tensor:
        """Ray distance [M] to the room's surface for unit rays rays_o, rays_d [M, 3] starting inside it."""
        c, h = torch.tensor(self.center, dtype=rays_o.dtype), torch.tensor(self.half_size, dtype=rays_o.dtype)
        _, t_far, _ = ray_aabb(rays_o, rays_d, torch.stack([c - h, c + h]))
        return t_far

    def albedo(self, x: Tensor) -> Tensor:
        """Albedo [N, 3] in [0, 1] of the texture at surface points x [N, 3]."""
        f = self.face(x)
        p = self._local(x)
        out = torch.zeros(len(x), 3, dtype=x.dtype)
        for face in range(6):
            idx = torch.nonzero(f == face).flatten()
            if idx.numel() == 0:
                continue
            axis = face // 2
            uv = p.index_select(0, idx)[:, [a for a in range(3) if a != axis]]
            if face == 4:
                colour = _tiles(uv, self.seed + 100)
            elif face == 5:
                colour = _stripes(uv, self.seed + 200)
            else:
                colour = _blobs(uv, self.seed + 300 + 10 * face)
            out.index_copy_(0, idx, colour.to(x.dtype).clamp(0.0, 1.0))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Room:
        """Inverse of :meth:`to_dict`; malformed input raises ValueError/KeyError/TypeError."""
        center = tuple(float(v) for v in d["center"])
        half = tuple(float(v) for v in d["half_size"])
        if len(center) != 3 or len(half) != 3 or min(half) <= 0.0:
            raise ValueError("room center and half_size need 3 values, half_size positive")
        return cls(center, half, int(d.get("seed", 0)))  # type: ignore[arg-type]


@dataclass
class CaptureScene:
    """A procedural object (an `SDFScene`) inside a `Room`; the object must lie inside the room.

    ``object_texture`` is the amplitude of the mild noise that modulates the object's albedo.
    """

    obj: SDFScene
    room: Room = field(default_factory=Room)
    object_texture: float = 0.15

    def sdf(self, x: Tensor) -> Tensor:
        """Signed distance [N] to the nearest surface (object or room), positive in free space."""
        return torch.minimum(self.obj.sdf(x), self.room.sdf(x))

    def trace(self, rays_o: Tensor, rays_d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """First hit of unit rays rays_o, rays_d [M, 3] (world) starting inside the room.

        Returns t [M] ray distance (every ray hits: the room is closed), on_object [M] bool and the
        hit points [M, 3]. The object is sphere traced; the room is intersected exactly.
        """
        t_obj, hit = sphere_trace(self.obj, rays_o, rays_d)
        t_room = self.room.exit_distance(rays_o, rays_d)
        on_object = hit & (t_obj < t_room)
        t = torch.where(on_object, t_obj, t_room)
        return t, on_object, rays_o + t[:, None] * rays_d

    def surface(self, x: Tensor, on_object: Tensor) -> tuple[Tensor, Tensor]:
        """Albedo [M, 3] and unit normals [M, 3] at hit points x [M, 3] (``on_object`` [M] from `trace`)."""
        albedo, normal = self.room.albedo(x), self.room.normal(x)
        idx = torch.nonzero(on_object).flatten()
        if idx.numel():
            xo = x.index_select(0, idx)
            noise = value_noise(xo / 0.2, self.room.seed + 500) - 0.5
            obj_albedo = self.obj.color(xo) * (1.0 + 2.0 * self.object_texture * noise)[:, None]
            albedo.index_copy_(0, idx, obj_albedo.clamp(0.0, 1.0))
            normal.index_copy_(0, idx, self.obj.normal(xo))
        return albedo, normal

    def to_dict(self) -> dict[str, Any]:
        """The object's `SDFScene.to_dict` (so `load_scene_sdf` still reads it) plus ``room``."""
        return {**self.obj.to_dict(), "room": self.room.to_dict(), "object_texture": self.object_texture}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaptureScene:
        return cls(SDFScene.from_dict(d), Room.from_dict(d["room"]), float(d.get("object_texture", 0.15)))
