"""The generator's own rings for the training objects of an orbit set: each object's ring sampled from its
input view (ring frame 0, the object's elevation and ring azimuths) as `image-to-3d` samples it, stored
beside the truth so the decoder can learn to turn what the generator makes — not only true latents — into
the true object.

The chain's states x_t at a few of its timesteps (`info["state_t"]`) are kept too, for training on what the
generator meets while it samples rather than on noised truth. With `average` K > 1 the stored ring is the mean
of K rings drawn one after another from the object's seed, as `image-to-3d --average K` decodes them (the
states are the first ring's).

Layout of a sample set folder: `info.json` (generator name and weight hash, orbit set, objects, DDIM steps,
guidance, seed, workers, state timesteps, rings averaged) and, per worker k of n, `part_k_of_n.npy` float16
[M,1+T,V,4,h,w] (the sampled ring, then the T states) with the objects i ≡ k (mod n) in order, and
`part_k_of_n.json` {"done": M}. Writing is resumable (a part is saved every `save_every` objects under a temporary
name, then renamed) and the set may grow (more objects, the same settings); loading needs every part complete, or
as far as the first objects asked for (`upto`)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ...checkpoint import write_json
from ...errors import ConfigError, DataError
from .generator import DEFAULT_GUIDANCE, MultiViewGenerator
from .orbit_set import OrbitSet

__all__ = ["write_sample_set", "load_sample_set", "weights_hash", "state_steps"]


def weights_hash(model: torch.nn.Module) -> str:
    """12 hex digits of a SHA-1 over every tensor of `model`'s state dict (to tell generators apart)."""
    digest = hashlib.sha1()
    for k, t in model.state_dict().items():
        digest.update(k.encode())
        digest.update(t.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def state_steps(steps: int) -> list[int]:
    """Indices of the DDIM steps whose entering states a sample set keeps: a quarter, half and three quarters
    of the way down the chain."""
    return sorted({steps // 4, steps // 2, (3 * steps) // 4} - {0}) if steps >= 4 else []


def _part(out: Path, k: int, n: int) -> tuple[Path, Path]:
    return out / f"part_{k}_of_{n}.npy", out / f"part_{k}_of_{n}.json"


def write_sample_set(data: Path, generator: MultiViewGenerator, generator_name: str, out: Path, objects: int,
                     steps: int = 30, guidance: float = DEFAULT_GUIDANCE, seed: int = 0,
                     worker: tuple[int, int] = (0, 1), save_every: int = 16, average: int = 1,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Sample the rings of the first `objects` objects of the orbit set `data` (object i with seed `seed`+i;
    each the mean of `average` rings) into the sample set `out`; this process does the objects i ≡ k (mod n)
    of `worker` (k, n)."""
    k, n = worker
    if objects < 1 or steps < 1 or average < 1 or not 0 <= k < n:
        raise ConfigError("need objects >= 1, steps >= 1, average >= 1 and a worker k/n with 0 <= k < n")
    orbits = OrbitSet(data, generator)
    if objects > orbits.n:
        raise ConfigError(f"{data}: has {orbits.n} objects, {objects} asked for")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keep = state_steps(steps)
    ts = generator.timesteps(steps)
    info = {"data": str(data), "generator": generator_name, "generator_hash": weights_hash(generator.unet),
            "objects": objects, "ring": orbits.ring, "steps": steps, "guidance": guidance, "seed": seed,
            "workers": n, "state_t": [int(ts[j]) for j in keep], "average": average}
    info_path = out / "info.json"
    if info_path.is_file():
        old = {"average": 1, **json.loads(info_path.read_text())}  # sets from before `average` hold one ring
        if {**old, "objects": objects} != info or old["objects"] > objects:
            raise ConfigError(f"{out}: holds samples made with other settings (see its info.json; only --objects "
                              "may grow); use a new folder")
    write_json(info_path, info)
    mine = list(range(k, objects, n))
    arr_path, done_path = _part(out, k, n)
    done = json.loads(done_path.read_text())["done"] if done_path.is_file() else 0
    parts = [torch.from_numpy(np.load(arr_path)[:done])] if done else []
    states: dict[int, Tensor] = {}
    for j in range(done, len(mine)):
        i = mine[j]
        gen = torch.Generator().manual_seed(seed + i)
        _, lat = generator.sample_rings(orbits.inputs([i]), orbits.elevation[i, :1], orbits.azimuth[i, : orbits.ring],
                                        steps, guidance, gen, average,
                                        trace=lambda t, x: states.__setitem__(t, x[0].clone()))
        chain = [lat[0]] + [states[t] for t in info["state_t"]]
        parts.append(torch.stack(chain)[None].to(torch.float16))
        if (j + 1) % save_every == 0 or j + 1 == len(mine):
            tmp = arr_path.with_suffix(".tmp.npy")
            np.save(tmp, torch.cat(parts).numpy())
            os.replace(tmp, arr_path)
            write_json(done_path, {"done": j + 1})
        if progress is not None:
            progress(j + 1, len(mine))
    return out


def load_sample_set(folder: Path, generator: MultiViewGenerator | None = None,
                    orbits: OrbitSet | None = None, upto: int | None = None) -> tuple[Tensor, dict]:
    """(latents float32 [objects,1+T,V,4,h,w] in orbit-set order: the sampled ring, then the chain's states at
    info["state_t"]; info) of a complete sample set — or, with `upto`, of its first `upto` objects, which may be
    done while the set still grows; with `generator`, refuse a set sampled by another one, with `orbits`, one
    whose rings do not fit that orbit set (ring size, latent shape, object count)."""
    folder = Path(folder)
    if not (folder / "info.json").is_file():
        raise DataError(f"{folder}: no sample set here (make one with `python tools/train_gsv3d.py samples`)")
    info = json.loads((folder / "info.json").read_text())
    if generator is not None and weights_hash(generator.unet) != info["generator_hash"]:
        raise ConfigError(f"{folder}: sampled by another generator ({info['generator']})")
    n, objects = int(info["workers"]), int(info["objects"])
    if upto is not None:
        if not 0 < upto <= objects:
            raise ConfigError(f"{folder}: holds {objects} objects; its first {upto} asked for")
        objects = upto
    out: Tensor | None = None
    for k in range(n):
        arr_path, done_path = _part(folder, k, n)
        mine = range(k, objects, n)
        if not mine:  # `upto` below the number of workers: this one holds none of the objects asked for
            continue
        done = json.loads(done_path.read_text())["done"] if done_path.is_file() else 0
        if done < len(mine):
            raise DataError(f"{folder}: worker {k}/{n} has sampled {done} of the {len(mine)} objects needed; "
                            "finish it")
        part = torch.from_numpy(np.load(arr_path)[: len(mine)].astype(np.float32))
        if out is None:
            out = torch.empty(objects, *part.shape[1:])
        out[k::n] = part
    assert out is not None
    if orbits is not None and (out.shape[2:] != orbits.latents.shape[1:] or objects > orbits.n):
        raise ConfigError(f"{folder}: its rings do not fit the orbit set it is used with")
    return out, info
