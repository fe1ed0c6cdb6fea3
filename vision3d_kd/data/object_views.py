"""Rendered views of the procedural object world (`data/objects.py`): the bundled prior's training set
and the ground truth its samples (and text-to-3D results) are scored against.

Cameras are sampled like text-to-3D (azimuth 0-360°, elevation -10-60°, radius 3.2-3.8, 40° field of
view) and look at the origin, z up. Shading is Lambertian with one random light from the upper
hemisphere; images are composited on white. A data set folder holds shards `images_NNNN.npy`
(uint8 [N,H,W,3]), `parts_NNNN.npy` (uint8 [N,H,W]: 1 where the family's view-asymmetric part, e.g.
the mug's handle, is the surface seen) and `meta_NNNN.jsonl` (one JSON record per image: caption, family,
colours, elevation_deg, azimuth_deg, radius, light), plus `objects.jsonl` (each object's SDF) and `info.json`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..cameras import cameras_from_spherical, image_rays
from ..errors import ConfigError, DataError
from .objects import ASYMMETRIC, COLOURS, FAMILIES, HELD_OUT, TWO_COLOUR, ObjectSpec, build_object, caption, view_suffix
from .procedural import Shading, render_sdf

__all__ = ["ELEVATION_RANGE", "RADIUS_RANGE", "FOV_DEG", "render_object", "random_spec", "random_light",
           "write_prior_dataset", "load_prior_shards", "add_part_masks", "load_part_masks"]

ELEVATION_RANGE = (-10.0, 60.0)
RADIUS_RANGE = (3.2, 3.8)
FOV_DEG = 40.0


def random_spec(rng: random.Random, held_out: bool = False) -> ObjectSpec:
    """A random object: family and colours uniform; only HELD_OUT pairs when held_out, never them otherwise."""
    while True:
        family, colour = rng.choice(FAMILIES), rng.choice(list(COLOURS))
        if ((family, colour) in HELD_OUT) == held_out:
            break
    colour2 = rng.choice([c for c in COLOURS if c != colour]) if family in TWO_COLOUR else None
    return ObjectSpec(family, colour, colour2)


def random_light(rng: random.Random) -> Shading:
    """Lambertian shading with a light 20-80° above the horizon at any azimuth, ambient 0.3-0.5."""
    el, az = math.radians(rng.uniform(20.0, 80.0)), math.radians(rng.uniform(0.0, 360.0))
    d = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
    return Shading(light_dir=d, ambient=rng.uniform(0.3, 0.5))


@torch.no_grad()
def render_object(spec: ObjectSpec, elevation_deg: Tensor, azimuth_deg: Tensor, radius: Tensor, size: int = 64,
                  shading: Shading | None = None, supersample: int = 2) -> dict[str, Tensor]:
    """Views [N] of `spec`: rgb [N,H,W,3] in [0,1] composited on white, alpha [N,H,W], depth [N,H,W] (ray
    distance at the pixel centre, world units; inf on a miss) and part [N,H,W] (index into spec.parts of the
    primitive seen at each pixel centre, -1 on the background)."""
    scene = build_object(spec)
    n = len(elevation_deg)
    cams = cameras_from_spherical(elevation_deg, azimuth_deg, radius, torch.full((n,), FOV_DEG), size, size)
    out = render_sdf(scene, cams, supersample, shading)
    alpha = out["alpha"]
    rgb = out["rgb"] * alpha + (1.0 - alpha)
    depth = out["depth"].reshape(-1)
    hit = torch.isfinite(depth).nonzero().flatten()
    part = torch.full((n * size * size,), -1, dtype=torch.long)
    origins, dirs = zip(*(image_rays(cams, i) for i in range(n)), strict=True)
    o, d = torch.cat(origins), torch.cat(dirs)
    x = o.index_select(0, hit) + depth.index_select(0, hit)[:, None] * d.index_select(0, hit)
    part.index_copy_(0, hit, scene.sdf_and_index(x)[1])
    return {"rgb": rgb, "alpha": alpha[..., 0], "depth": out["depth"], "part": part.reshape(n, size, size)}


def _view_params(rng: random.Random, k: int) -> tuple[Tensor, Tensor, Tensor]:
    elev = torch.tensor([rng.uniform(*ELEVATION_RANGE) for _ in range(k)])
    azim = torch.tensor([rng.uniform(0.0, 360.0) for _ in range(k)])
    rad = torch.tensor([rng.uniform(*RADIUS_RANGE) for _ in range(k)])
    return elev, azim, rad


def write_prior_dataset(out: Path, n_images: int, views_per_object: int = 8, size: int = 64, seed: int = 0,
                        shard_size: int = 2048, progress: Callable[[int, int], None] | None = None,
                        worker: tuple[int, int] = (0, 1)) -> Path:
    """Render n_images training images (views_per_object random views of each random object, HELD_OUT
    pairs excluded) into shards under `out`. Resumable: complete shards are kept and the run continues
    with the next one; every shard is written to a temporary name and renamed. worker (k, n): this
    process renders only shards s with s % n == k (n processes fill one folder together)."""
    if n_images < 1 or views_per_object < 1 or size < 8 or shard_size < 1:
        raise ConfigError("need n_images >= 1, views_per_object >= 1, size >= 8, shard_size >= 1")
    if not 0 <= worker[0] < worker[1]:
        raise ConfigError(f"worker must be (k, n) with 0 <= k < n, got {worker}")
    out.mkdir(parents=True, exist_ok=True)
    info = {"n_images": n_images, "views_per_object": views_per_object, "size": size, "seed": seed,
            "shard_size": shard_size}
    info_path = out / "info.json"
    if info_path.is_file() and json.loads(info_path.read_text()) != info:
        raise DataError(f"{out}: holds a data set made with other settings ({info_path}); use a new folder")
    info_path.write_text(json.dumps(info, indent=1))
    n_shards = math.ceil(n_images / shard_size)
    for s in range(n_shards):
        count = min(shard_size, n_images - s * shard_size)
        if s % worker[1] != worker[0]:
            continue
        if (out / f"images_{s:04d}.npy").is_file():
            if progress is not None:
                progress(s * shard_size + count, n_images)
            continue
        rng = random.Random(f"{seed}-{s}")  # each shard reproducible on its own (resume = same data)
        images, parts, meta, objects = [], [], [], []
        while len(images) < count:
            spec = random_spec(rng)
            k = min(views_per_object, count - len(images))
            elev, azim, rad = _view_params(rng, k)
            light = random_light(rng)
            r = render_object(spec, elev, azim, rad, size, light)
            obj_id = f"{s:04d}-{len(objects):05d}"
            objects.append({"id": obj_id, "scene": build_object(spec).to_dict(), "parts": spec.parts})
            parts.extend(_part_mask(spec, r["part"]))
            for j in range(k):
                images.append((r["rgb"][j].numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
                meta.append({"object": obj_id, "caption": caption(spec) + view_suffix(float(elev[j]), float(azim[j])),
                             "family": spec.family, "colour": spec.colour, "colour2": spec.colour2,
                             "elevation_deg": float(elev[j]), "azimuth_deg": float(azim[j]),
                             "radius": float(rad[j]), "light_dir": list(light.light_dir), "ambient": light.ambient})
            if progress is not None:
                progress(s * shard_size + len(images), n_images)
        _write_shard(out, s, np.stack(images), np.stack(parts), meta, objects)
    return out


def _part_mask(spec: ObjectSpec, part: Tensor) -> np.ndarray:
    """uint8 [N,H,W] from render_object's part map: 1 where spec's view-asymmetric part is seen."""
    name = ASYMMETRIC.get(spec.family)
    if name is None:
        return np.zeros(part.shape, dtype=np.uint8)
    return (part == spec.parts.index(name)).numpy().astype(np.uint8)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _write_shard(out: Path, s: int, images: np.ndarray, parts: np.ndarray, meta: list[dict],
                 objects: list[dict]) -> None:
    _save_npy(out / f"parts_{s:04d}.npy", parts)
    for name, text in ((f"meta_{s:04d}.jsonl", meta), (f"objects_{s:04d}.jsonl", objects)):
        tmp = out / f".{name}.tmp"
        tmp.write_text("".join(json.dumps(m) + "\n" for m in text))
        os.replace(tmp, out / name)
    _save_npy(out / f"images_{s:04d}.npy", images)  # last: its presence marks the shard complete


def _image_shards(folder: Path) -> list[Path]:
    """The complete shards' image files of a data set folder, in order (DataError when there are none)."""
    paths = sorted(Path(folder).glob("images_*.npy"))
    if not paths:
        raise DataError(f"{folder}: no images_*.npy shards (make them with tools/make_prior_data.py)")
    return paths


def _sibling(image_path: Path, kind: str, suffix: str = ".npy") -> Path:
    """The `kind`_NNNN file (meta, parts, objects) of the shard whose images are image_path."""
    return image_path.with_name(image_path.name.replace("images_", f"{kind}_").replace(".npy", suffix))


def _shard_meta(image_path: Path) -> list[dict]:
    return [json.loads(line) for line in _sibling(image_path, "meta", ".jsonl").read_text().splitlines()]


def add_part_masks(folder: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """Write the missing `parts_NNNN.npy` of a data set folder (made before part masks existed) by
    re-rendering each image's object from its metadata; complete part files are kept."""
    paths = _image_shards(folder)
    size, done = int(np.load(paths[0], mmap_mode="r").shape[1]), 0
    todo = [p for p in paths if not _sibling(p, "parts").is_file()]
    total = sum(len(np.load(p, mmap_mode="r")) for p in todo)
    for p in todo:
        meta = _shard_meta(p)
        parts = np.zeros((len(meta), size, size), dtype=np.uint8)
        # the views of one object are consecutive records
        for _, group in itertools.groupby(range(len(meta)), key=lambda i: meta[i]["object"]):
            rows = list(group)
            m = meta[rows[0]]
            spec = ObjectSpec(m["family"], m["colour"], m.get("colour2"))
            if spec.family in ASYMMETRIC:
                views = [torch.tensor([meta[i][k] for i in rows]) for k in ("elevation_deg", "azimuth_deg", "radius")]
                parts[rows] = _part_mask(spec, render_object(spec, *views, size, supersample=1)["part"])
            done += len(rows)
            if progress is not None:
                progress(done, total)
        _save_npy(_sibling(p, "parts"), parts)


def load_prior_shards(folder: Path) -> tuple[np.ndarray, list[dict]]:
    """All complete shards of a data set folder: images uint8 [N,H,W,3] and their N metadata records."""
    images, meta = [], []
    for p in _image_shards(folder):
        m = _shard_meta(p)
        arr = np.load(p, mmap_mode="r")
        if len(arr) != len(m):
            raise DataError(f"{p}: {len(arr)} images but {len(m)} metadata records")
        images.append(np.asarray(arr))
        meta.extend(m)
    return np.concatenate(images), meta


def load_part_masks(folder: Path) -> np.ndarray:
    """The part masks uint8 [N,H,W] of all complete shards, in load_prior_shards' image order."""
    masks = []
    for p in _image_shards(folder):
        q = _sibling(p, "parts")
        if not q.is_file():
            raise DataError(f"{q}: missing; add part masks with tools/make_prior_data.py --out {folder} --part-masks")
        masks.append(np.load(q))
    return np.concatenate(masks)
