"""Analytic signed distance primitives and the named procedural scenes built from them.

All distances are in world units (the scenes fit in [-1, 1]^3, z up); negative inside. Every
primitive SDF is exact, so their union (min) is exact outside the shapes and sphere tracing never
overshoots. Colours are linear RGB albedos in [0, 1].
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, DataError

__all__ = [
    "Sphere",
    "Box",
    "Torus",
    "Cylinder",
    "Cone",
    "Primitive",
    "SDFScene",
    "SCENE_NAMES",
    "scene_sdf",
    "load_scene_sdf",
]

Vec3 = tuple[float, float, float]
_AXIS_ORDER = {"x": (1, 2, 0), "y": (2, 0, 1), "z": (0, 1, 2)}


def _local(x: Tensor, center: Vec3, axis: str = "z") -> Tensor:
    """Points [N, 3] relative to ``center``, permuted so that ``axis`` becomes the last coordinate."""
    p = x - torch.tensor(center, dtype=x.dtype, device=x.device)
    if axis == "z":
        return p
    return p.index_select(1, torch.tensor(_AXIS_ORDER[axis], device=x.device))


@dataclass
class Sphere:
    """Sphere of ``radius`` around ``center``."""

    center: Vec3 = (0.0, 0.0, 0.0)
    radius: float = 0.8
    color: Vec3 = (0.8, 0.3, 0.2)
    kind: str = field(default="sphere", init=False)

    def sdf(self, x: Tensor) -> Tensor:
        return _local(x, self.center).norm(dim=-1) - self.radius


@dataclass
class Box:
    """Axis-aligned box with half extents ``half_size`` around ``center``."""

    center: Vec3 = (0.0, 0.0, 0.0)
    half_size: Vec3 = (0.7, 0.5, 0.4)
    color: Vec3 = (0.2, 0.5, 0.8)
    kind: str = field(default="box", init=False)

    def sdf(self, x: Tensor) -> Tensor:
        q = _local(x, self.center).abs() - torch.tensor(self.half_size, dtype=x.dtype, device=x.device)
        inside = torch.maximum(torch.maximum(q[:, 0], q[:, 1]), q[:, 2]).clamp_max(0.0)
        return q.clamp_min(0.0).norm(dim=-1) + inside


@dataclass
class Torus:
    """Torus around ``axis`` through ``center``: ring radius ``major``, tube radius ``minor``."""

    center: Vec3 = (0.0, 0.0, 0.0)
    major: float = 0.6
    minor: float = 0.25
    axis: str = "z"
    color: Vec3 = (0.9, 0.7, 0.2)
    kind: str = field(default="torus", init=False)

    def sdf(self, x: Tensor) -> Tensor:
        p = _local(x, self.center, self.axis)
        ring = p[:, :2].norm(dim=-1) - self.major
        return torch.stack([ring, p[:, 2]], dim=-1).norm(dim=-1) - self.minor


@dataclass
class Cylinder:
    """Capped cylinder along ``axis``: ``radius`` and half height ``half_height`` around ``center``."""

    center: Vec3 = (0.0, 0.0, 0.0)
    radius: float = 0.5
    half_height: float = 0.7
    axis: str = "z"
    color: Vec3 = (0.3, 0.75, 0.35)
    kind: str = field(default="cylinder", init=False)

    def sdf(self, x: Tensor) -> Tensor:
        p = _local(x, self.center, self.axis)
        dr, dz = p[:, :2].norm(dim=-1) - self.radius, p[:, 2].abs() - self.half_height
        outside = torch.stack([dr, dz], dim=-1).clamp_min(0.0).norm(dim=-1)
        return outside + torch.maximum(dr, dz).clamp_max(0.0)


@dataclass
class Cone:
    """Solid cone along ``axis``: base disc of ``radius`` at center - h/2, apex at center + h/2."""

    center: Vec3 = (0.0, 0.0, 0.0)
    radius: float = 0.6
    height: float = 1.4
    axis: str = "z"
    color: Vec3 = (0.7, 0.35, 0.8)
    kind: str = field(default="cone", init=False)

    def sdf(self, x: Tensor) -> Tensor:
        # Exact capped-cone distance in the (radial, axial) half plane, with top radius 0.
        p = _local(x, self.center, self.axis)
        h, r1 = 0.5 * self.height, self.radius
        qx, qy = p[:, :2].norm(dim=-1), p[:, 2]
        cap_r = torch.where(qy < 0.0, torch.full_like(qx, r1), torch.zeros_like(qx))
        ca = torch.stack([qx - torch.minimum(qx, cap_r), qy.abs() - h], dim=-1)
        k1 = torch.tensor([0.0, h], dtype=x.dtype, device=x.device)
        k2 = torch.tensor([-r1, 2.0 * h], dtype=x.dtype, device=x.device)
        q = torch.stack([qx, qy], dim=-1)
        s = (((k1 - q) * k2).sum(-1) / (k2 * k2).sum()).clamp(0.0, 1.0)
        cb = q - k1 + k2 * s[:, None]
        sign = torch.where((cb[:, 0] < 0.0) & (ca[:, 1] < 0.0), -1.0, 1.0)
        return sign * torch.minimum((ca * ca).sum(-1), (cb * cb).sum(-1)).sqrt()


Primitive = Sphere | Box | Torus | Cylinder | Cone
_KINDS: dict[str, type] = {"sphere": Sphere, "box": Box, "torus": Torus, "cylinder": Cylinder, "cone": Cone}


@dataclass
class SDFScene:
    """Union of primitives: ``sdf`` is their minimum, ``color`` the albedo of the nearest one.

    aabb: ((min x,y,z), (max x,y,z)) box in world units that holds the scene with margin.
    """

    name: str
    primitives: list[Primitive]
    aabb: tuple[Vec3, Vec3] = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))

    def sdf(self, x: Tensor) -> Tensor:
        """Signed distance [N] (world units) at points x [N, 3]."""
        # elementwise minimum, not a dim reduction: reductions are slow on a busy multi-core CPU
        d = self.primitives[0].sdf(x)
        for p in self.primitives[1:]:
            d = torch.minimum(d, p.sdf(x))
        return d

    def sdf_and_index(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Signed distance [N] and the index [N] of the nearest primitive (first on ties)."""
        d = self.primitives[0].sdf(x)
        idx = torch.zeros(len(x), dtype=torch.long, device=x.device)
        for i, p in enumerate(self.primitives[1:], start=1):
            di = p.sdf(x)
            idx = torch.where(di < d, i, idx)
            d = torch.minimum(d, di)
        return d, idx

    def color(self, x: Tensor) -> Tensor:
        """Albedo [N, 3] of the nearest primitive at points x [N, 3]."""
        _, idx = self.sdf_and_index(x)
        palette = torch.tensor([p.color for p in self.primitives], dtype=x.dtype, device=x.device)
        return palette.index_select(0, idx)

    def normal(self, x: Tensor) -> Tensor:
        """Unit outward normals [N, 3]: the normalised SDF gradient (autograd) at x [N, 3]; zero where the
        gradient is undefined (a cone's apex or axis, where the exact SDF has a square-root kink)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.sdf(xg).sum(), xg)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        return grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def occupancy(self, x: Tensor) -> Tensor:
        """Inside mask [N] (sdf < 0), for volume IoU."""
        return self.sdf(x) < 0.0

    def surface_points(self, n: int, generator: torch.Generator, iters: int = 8) -> Tensor:
        """About ``n`` points [M, 3] on the surface (|sdf| < 1e-4), for chamfer distances.

        Uniform points in the aabb are projected along the gradient; the result is not uniform in area.
        """
        lo, hi = torch.tensor(self.aabb[0]), torch.tensor(self.aabb[1])
        out: list[Tensor] = []
        count, tries = 0, 0
        while count < n and tries < 20:
            x = lo + (hi - lo) * torch.rand(max(2 * n, 1024), 3, generator=generator)
            x = x[self.sdf(x).abs() < 0.3]
            for _ in range(iters):
                x = x - self.sdf(x)[:, None] * self.normal(x)
            x = x[self.sdf(x).abs() < 1e-4]
            out.append(x)
            count += len(x)
            tries += 1
        return torch.cat(out)[:n]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``kind`` names each primitive type)."""
        return {
            "name": self.name,
            "aabb": [list(self.aabb[0]), list(self.aabb[1])],
            "primitives": [asdict(p) for p in self.primitives],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SDFScene:
        """Inverse of :meth:`to_dict`; malformed input raises ValueError/KeyError/TypeError."""
        prims: list[Primitive] = []
        for raw in d["primitives"]:
            raw = dict(raw)
            kind = raw.pop("kind")
            if kind not in _KINDS:
                raise ValueError(f"unknown primitive kind {kind!r}")
            args = {k: tuple(float(c) for c in v) if isinstance(v, list) else v for k, v in raw.items()}
            prim = _KINDS[kind](**args)
            _validate(prim)
            prims.append(prim)
        if not prims:
            raise ValueError("scene has no primitives")
        lo, hi = (tuple(float(c) for c in row) for row in d["aabb"])
        if len(lo) != 3 or len(hi) != 3 or not all(a < b for a, b in zip(lo, hi, strict=True)):
            raise ValueError("aabb must be [[min x,y,z],[max x,y,z]] with min < max")
        return cls(str(d["name"]), prims, (lo, hi))


def _validate(p: Primitive) -> None:
    values = []
    for key, v in asdict(p).items():
        if key in ("center", "color", "half_size"):
            if len(v) != 3:
                raise ValueError(f"{p.kind} {key} must have 3 values")
            values.extend(v)
        elif key == "axis":
            if v not in _AXIS_ORDER:
                raise ValueError(f"{p.kind} axis must be x, y or z")
        elif key != "kind":
            if float(v) <= 0.0:
                raise ValueError(f"{p.kind} {key} must be positive")
            values.append(v)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ValueError(f"{p.kind} holds non-finite values")


def _named(name: str) -> list[Primitive]:
    if name == "sphere":
        return [Sphere()]
    if name == "box":
        return [Box()]
    if name == "torus":
        return [Torus()]
    if name == "cylinder":
        return [Cylinder()]
    if name == "cone":
        return [Cone()]
    # composite: a slab with a sphere, a torus lying on it and a cone, four colours
    return [
        Box(center=(0.0, 0.0, -0.55), half_size=(0.8, 0.6, 0.15), color=(0.25, 0.45, 0.85)),
        Sphere(center=(0.35, 0.15, -0.05), radius=0.35, color=(0.85, 0.25, 0.2)),
        Torus(center=(-0.4, -0.15, -0.3), major=0.3, minor=0.1, color=(0.95, 0.75, 0.15)),
        Cone(center=(-0.35, 0.3, 0.0), radius=0.25, height=0.8, color=(0.3, 0.8, 0.35)),
    ]


SCENE_NAMES = ("sphere", "box", "torus", "cylinder", "cone", "composite")


def scene_sdf(name: str) -> SDFScene:
    """The named procedural scene (one of SCENE_NAMES), inside [-1, 1]^3 with aabb [-1.5, 1.5]^3."""
    if name not in SCENE_NAMES:
        raise ConfigError(f"unknown scene {name!r}; choose from {', '.join(SCENE_NAMES)}")
    return SDFScene(name, _named(name))


def load_scene_sdf(path: str | Path) -> SDFScene:
    """Read ``scene.json`` from a folder written by ``write_scene`` (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "scene.json"
    if not p.is_file():
        raise DataError(f"{p}: does not exist")
    try:
        return SDFScene.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(" ".join(f"{p}: not a valid SDF scene ({type(e).__name__}: {e})".split())) from None
