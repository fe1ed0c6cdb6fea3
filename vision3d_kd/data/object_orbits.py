"""Orbits of the procedural object world (`data/objects.py`) for image-to-3D (GSV3D): per object, views on
one elevation ring around it (frame 0 is the input view) and a few novel views off the ring, each with RGB on
white, opacity and ray-distance depth, so every generated view has a known answer.

Frame: the object's world frame turned about z by −`azimuth0`, so that the input camera stands at azimuth 0 —
all an image-to-3D model can know (it never learns where the object's front is). Azimuths below are relative
to the input view; cameras stand ORBIT_RADIUS from the origin with FOV_DEG field of view and look at it, z up.

A training set folder holds shards: `rgb_NNNN.npy` uint8 [n,K,H,W,3], `opacity_NNNN.npy` uint8 [n,K,H,W],
`depth_NNNN.npy` float16 [n,K,H,W] (ray distance, 0 on a miss), `meta_NNNN.jsonl` (one record per object:
family, colours, azimuth0, the K views' elevation_deg / azimuth_deg, light) and `info.json`; the first `ring`
views of an object are its ring, the rest its novel views.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras, cameras_from_spherical
from ..errors import ConfigError, DataError
from .object_views import FOV_DEG, _save_npy, random_light, random_spec, render_object
from .objects import COLOURS, HELD_OUT, TWO_COLOUR, ObjectSpec
from .procedural import Shading

__all__ = ["ORBIT_RADIUS", "RING_ELEVATION_RANGE", "NOVEL_ELEVATION_RANGE", "OrbitObject", "orbit_cameras",
           "ring_azimuths", "render_views", "split_objects", "write_orbit_dataset", "load_orbit_dataset"]

ORBIT_RADIUS = 3.5
RING_ELEVATION_RANGE = (0.0, 35.0)  # elevation of the input view (and its ring)
NOVEL_ELEVATION_RANGE = (-10.0, 60.0)


@dataclass
class OrbitObject:
    """One object as an image-to-3D input: its spec, how it is turned (the input camera's absolute azimuth,
    degrees), the ring's elevation (degrees) and the light (world frame of the object)."""

    spec: ObjectSpec
    azimuth0: float
    elevation: float
    light: Shading

    def record(self) -> dict:
        return {"family": self.spec.family, "colour": self.spec.colour, "colour2": self.spec.colour2,
                "azimuth0": self.azimuth0, "elevation": self.elevation, "light_dir": list(self.light.light_dir),
                "ambient": self.light.ambient}

    @classmethod
    def from_record(cls, m: dict) -> OrbitObject:
        return cls(ObjectSpec(m["family"], m["colour"], m.get("colour2")), float(m["azimuth0"]),
                   float(m["elevation"]), Shading(light_dir=tuple(m["light_dir"]), ambient=float(m["ambient"])))


def orbit_cameras(elevation_deg: Tensor, azimuth_deg: Tensor, size: int, radius: float = ORBIT_RADIUS,
                  fov_deg: float = FOV_DEG) -> Cameras:
    """Cameras [K] at `radius` looking at the origin (relative frame: input view at azimuth 0), size² pixels."""
    k = len(elevation_deg)
    return cameras_from_spherical(elevation_deg.float(), azimuth_deg.float(), torch.full((k,), float(radius)),
                                  torch.full((k,), float(fov_deg)), size, size)


def ring_azimuths(views: int) -> Tensor:
    """[views] azimuths (degrees) evenly around the ring, starting at the input view (0)."""
    return torch.arange(views, dtype=torch.float32) * (360.0 / views)


def render_views(obj: OrbitObject, elevation_deg: Tensor, azimuth_deg: Tensor, size: int = 64) -> dict[str, Tensor]:
    """Ground truth at K relative views: rgb [K,H,W,3] on white in [0,1], opacity [K,H,W] in [0,1] and depth
    [K,H,W] (ray distance, 0 on a miss)."""
    r = render_object(obj.spec, elevation_deg.float(), azimuth_deg.float() + obj.azimuth0,
                      torch.full((len(elevation_deg),), ORBIT_RADIUS), size, obj.light)
    depth = torch.where(torch.isfinite(r["depth"]), r["depth"], torch.zeros(()))
    return {"rgb": r["rgb"], "opacity": r["alpha"], "depth": depth}


def _random_object(rng: random.Random, held_out: bool = False, spec: ObjectSpec | None = None) -> OrbitObject:
    return OrbitObject(spec or random_spec(rng, held_out), rng.uniform(0.0, 360.0), rng.uniform(*RING_ELEVATION_RANGE),
                       random_light(rng))


def split_objects(split: str, n: int) -> list[OrbitObject]:
    """`n` evaluation objects of `split` (validation / test), reproducible: the first half are (family,
    colour) pairs never seen in training (HELD_OUT: even entries for validation, odd for test, repeated
    with new turns and lights as needed), the rest seen pairs in new turns and lights."""
    if split not in ("validation", "test"):
        raise ConfigError(f"split must be validation or test, got {split!r}")
    rng = random.Random(f"orbit-{split}")
    pairs = sorted(HELD_OUT)[0 if split == "validation" else 1::2]
    out = []
    for i in range(n):
        if i < (n + 1) // 2:
            family, colour = pairs[i % len(pairs)]
            colour2 = rng.choice([c for c in COLOURS if c != colour]) if family in TWO_COLOUR else None
            out.append(_random_object(rng, spec=ObjectSpec(family, colour, colour2)))
        else:
            out.append(_random_object(rng))
    return out


def _views(rng: random.Random, obj: OrbitObject, ring: int, novel: int) -> tuple[Tensor, Tensor]:
    """Training views: the input view, ring−1 random azimuths on its ring (sorted), `novel` random views."""
    az = [0.0] + sorted(rng.uniform(0.0, 360.0) for _ in range(ring - 1))
    az += [rng.uniform(0.0, 360.0) for _ in range(novel)]
    el = [obj.elevation] * ring + [rng.uniform(*NOVEL_ELEVATION_RANGE) for _ in range(novel)]
    return torch.tensor(el), torch.tensor(az)


def write_orbit_dataset(out: Path, n_objects: int, ring: int = 16, novel: int = 4, size: int = 64, seed: int = 0,
                        shard_size: int = 128, progress: Callable[[int, int], None] | None = None,
                        worker: tuple[int, int] = (0, 1)) -> Path:
    """Render a training set of `n_objects` orbits (HELD_OUT pairs never drawn) into shards under `out`.
    Resumable (complete shards are kept; each is written under a temporary name, `rgb_` last); worker (k, n):
    this process renders only shards s with s % n == k."""
    if n_objects < 1 or ring < 2 or novel < 0 or size < 8 or shard_size < 1:
        raise ConfigError("need n_objects >= 1, ring >= 2, novel >= 0, size >= 8, shard_size >= 1")
    out.mkdir(parents=True, exist_ok=True)
    info = {"n_objects": n_objects, "ring": ring, "novel": novel, "size": size, "seed": seed, "shard_size": shard_size}
    info_path = out / "info.json"
    if info_path.is_file() and json.loads(info_path.read_text()) != info:
        raise DataError(f"{out}: holds an orbit set made with other settings ({info_path}); use a new folder")
    info_path.write_text(json.dumps(info, indent=1))
    for s in range(math.ceil(n_objects / shard_size)):
        count = min(shard_size, n_objects - s * shard_size)
        if s % worker[1] != worker[0]:
            continue
        if not (out / f"rgb_{s:04d}.npy").is_file():
            _write_shard(out, s, count, ring, novel, size, random.Random(f"orbits-{seed}-{s}"), progress,
                         s * shard_size, n_objects)
        if progress is not None:
            progress(s * shard_size + count, n_objects)
    return out


def _write_shard(out: Path, s: int, count: int, ring: int, novel: int, size: int, rng: random.Random,
                 progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
    rgb, opacity, depth, meta = [], [], [], []
    for i in range(count):
        obj = _random_object(rng)
        el, az = _views(rng, obj, ring, novel)
        r = render_views(obj, el, az, size)
        rgb.append((r["rgb"].numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
        opacity.append((r["opacity"].numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
        depth.append(r["depth"].numpy().astype(np.float16))
        meta.append({**obj.record(), "elevation_deg": el.tolist(), "azimuth_deg": az.tolist()})
        if progress is not None:
            progress(done + i + 1, total)
    _save_npy(out / f"opacity_{s:04d}.npy", np.stack(opacity))
    _save_npy(out / f"depth_{s:04d}.npy", np.stack(depth))
    tmp = out / f".meta_{s:04d}.jsonl.tmp"
    tmp.write_text("".join(json.dumps(m) + "\n" for m in meta))
    tmp.replace(out / f"meta_{s:04d}.jsonl")
    _save_npy(out / f"rgb_{s:04d}.npy", np.stack(rgb))  # last: its presence marks the shard complete


def load_orbit_dataset(folder: Path) -> dict:
    """All complete shards: rgb uint8 [N,K,H,W,3], opacity uint8 [N,K,H,W], depth float16 [N,K,H,W], meta
    (N records) and `ring` (how many of the K views are ring views)."""
    folder = Path(folder)
    paths = sorted(folder.glob("rgb_*.npy"))
    if not paths or not (folder / "info.json").is_file():
        raise DataError(f"{folder}: no orbit shards (make them with `python tools/train_gsv3d.py data`)")
    info = json.loads((folder / "info.json").read_text())
    parts: dict[str, list] = {"rgb": [], "opacity": [], "depth": [], "meta": []}
    for p in paths:
        stem = p.name[len("rgb_"):-len(".npy")]
        meta = [json.loads(x) for x in (folder / f"meta_{stem}.jsonl").read_text().splitlines()]
        arrays = {k: np.load(folder / f"{k}_{stem}.npy") for k in ("rgb", "opacity", "depth")}
        if any(len(a) != len(meta) for a in arrays.values()):
            raise DataError(f"{p}: shard arrays and metadata disagree in length")
        for k, a in arrays.items():
            parts[k].append(a)
        parts["meta"].extend(meta)
    return {"rgb": np.concatenate(parts["rgb"]), "opacity": np.concatenate(parts["opacity"]),
            "depth": np.concatenate(parts["depth"]), "meta": parts["meta"], "ring": int(info["ring"])}
