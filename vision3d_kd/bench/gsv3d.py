"""`v3kd bench gsv3d`: image-to-3D on held-out objects of the procedural world, the raw generator against the
decoder and the decoder with the geometric-distillation LoRA, several sampling seeds.

Objects: `data.object_orbits.split_objects(split, n)` — half of them (family, colour) pairs never seen in
training, all in new turns and lights; the input is the true 64-px view at azimuth 0 on the object's ring. Per
object and seed: the generator samples the ring's views without and with the LoRA (same noise); the decoder
turns each into Gaussians — of the mean of `average` rings, with the input's own latent at the input camera if
`keep_input`, as `image-to-3d` does; the raw figures (consistency_raw, psnr_ring_*) are of the first ring.
- consistency_* (`scores.reprojection_error`, true depth): raw = the generator's own views (VAE-decoded),
  decoder / lora = the decoded Gaussians rendered at those views; lora_frames = the LoRA generator's views;
  gt = the true views (the metric's floor).
- chamfer_* : surface points of the Gaussians' renders at the ring and novel views against the true surface
  seen from the same views (scene units).
- psnr_novel_* / ssim_novel_*: renders at novel views off the ring against the truth; psnr_novel_true_latents:
  the decoder fed the true views' latents (VAE-encoded) instead of the generator's — the decoder's ceiling, so
  the gap to it is the generator's share of the error.
- seconds_per_image: CPU seconds of the whole `image-to-3d` (loading, sampling, decoding, splats.ply, mesh.glb,
  turntable) on the first objects, seed 0.
Validation objects choose defaults; test objects are run once."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..data.object_orbits import NOVEL_ELEVATION_RANGE, orbit_cameras, render_views, ring_azimuths, split_objects
from ..data.objects import HELD_OUT
from ..distill.gsv3d.generator import DEFAULT_GUIDANCE
from ..errors import RunError
from ..metrics import psnr, ssim
from ..render.splat import render_splats
from .report import mean_std

__all__ = ["run", "SPLITS"]

SPLITS = {"validation": 8, "test": 8}
NOVEL = 8
METRICS = ("consistency_gt", "consistency_raw", "consistency_decoder", "consistency_lora", "consistency_lora_frames",
           "chamfer_decoder", "chamfer_lora", "psnr_novel_decoder", "psnr_novel_lora", "ssim_novel_decoder",
           "ssim_novel_lora", "psnr_ring_raw", "psnr_ring_lora", "psnr_novel_true_latents")


def _novel_views(split: str, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(f"gsv3d-novel-{split}-{index}")
    return (torch.tensor([rng.uniform(*NOVEL_ELEVATION_RANGE) for _ in range(NOVEL)]),
            torch.tensor([rng.uniform(0.0, 360.0) for _ in range(NOVEL)]))


def _renders(splats, cams) -> dict[str, torch.Tensor]:
    outs = [render_splats(splats, cams[k], background=torch.ones(3)) for k in range(len(cams))]
    return {key: torch.stack([o[key] for o in outs]) for key in ("rgb", "opacity", "depth")}


@torch.no_grad()
def _score(obj, split: str, index: int, seed: int, models: dict, views: int, steps: int, guidance: float,
           average: int, keep_input: bool) -> dict:
    from ..distill.gsv3d.scores import chamfer, reprojection_error, surface_points

    az = ring_azimuths(views)
    el = torch.full((views,), obj.elevation)
    ring_cams = orbit_cameras(el, az, 64)
    gt = render_views(obj, el, az, 64)
    nel, naz = _novel_views(split, index)
    novel_cams = orbit_cameras(nel, naz, 64)
    gt_novel = render_views(obj, nel, naz, 64)
    image = gt["rgb"][0].permute(2, 0, 1)[None]
    both = orbit_cameras(torch.cat([el, nel]), torch.cat([az, naz]), 64)
    true_pts = surface_points(both, torch.cat([gt["opacity"], gt_novel["opacity"]]),
                              ray_depth=torch.cat([gt["depth"], gt_novel["depth"]]))
    rec: dict[str, Any] = {"object": index, "family": obj.spec.family, "colour": obj.spec.colour, "seed": seed,
                           "unseen_pair": (obj.spec.family, obj.spec.colour) in HELD_OUT}
    rec["consistency_gt"] = reprojection_error(gt["rgb"], ring_cams, gt["opacity"], gt["depth"])
    true_lat = models["raw"].encode(gt["rgb"].permute(0, 3, 1, 2))[None]
    rec["psnr_novel_true_latents"] = psnr(_renders(models["decoder"](true_lat, ring_cams, image)[0], novel_cams)["rgb"],
                                          gt_novel["rgb"])
    for name, g in (("raw", models["raw"]), ("lora", models["lora"])):
        first, lat = g.sample_rings(image, torch.tensor([obj.elevation]), az, steps, guidance,
                                    torch.Generator().manual_seed(seed), average, keep_input)
        frames = g.decode(first[0]).permute(0, 2, 3, 1)
        key = "raw" if name == "raw" else "lora_frames"
        rec[f"consistency_{key}"] = reprojection_error(frames, ring_cams, gt["opacity"], gt["depth"])
        rec[f"psnr_ring_{name}"] = psnr(frames[1:], gt["rgb"][1:])
        splats = models["decoder"](lat, ring_cams, image)[0]
        out = "decoder" if name == "raw" else "lora"
        ring_r, novel_r = _renders(splats, ring_cams), _renders(splats, novel_cams)
        rec[f"consistency_{out}"] = reprojection_error(ring_r["rgb"], ring_cams, gt["opacity"], gt["depth"])
        rec[f"psnr_novel_{out}"] = psnr(novel_r["rgb"], gt_novel["rgb"])
        rec[f"ssim_novel_{out}"] = ssim(novel_r["rgb"], gt_novel["rgb"])
        pred_pts = surface_points(both, torch.cat([ring_r["opacity"], novel_r["opacity"]]),
                                  camera_z=torch.cat([ring_r["depth"], novel_r["depth"]]))
        rec[f"chamfer_{out}"] = chamfer(pred_pts, true_pts)
    return rec


def _cpu_seconds(objs: list, models: dict, views: int, steps: int, guidance: float, average: int,
                 keep_input: bool) -> list[float]:
    """CPU seconds of the whole image_to_3d (bundled-path loading included) for each object's input view."""
    from PIL import Image

    from ..distill.gsv3d.image_to_3d import ImageTo3DConfig, image_to_3d

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, obj in enumerate(objs):
            gt = render_views(obj, torch.tensor([obj.elevation]), torch.zeros(1), 64)
            path = Path(tmp) / f"in{i}.png"
            Image.fromarray((gt["rgb"][0].numpy() * 255 + 0.5).clip(0, 255).astype("uint8")).save(path)
            cfg = ImageTo3DConfig(views=views, elevation=obj.elevation, steps=steps, guidance=guidance,
                                  average=average, keep_input=keep_input)
            out.append(image_to_3d(path, Path(tmp) / f"run{i}", cfg, models.get("paths"))["cpu_seconds"])
    return out


def _beyond(a: tuple[float, float], b: tuple[float, float], lower_is_better: bool) -> bool:
    """a better than b by more than both standard deviations."""
    gap = (b[0] - a[0]) if lower_is_better else (a[0] - b[0])
    return bool(gap > max(a[1], b[1]))


def run(quick: bool = False, split: str = "validation", seeds: int | None = None, views: int = 16, steps: int = 30,
        guidance: float = DEFAULT_GUIDANCE, generator: Path | None = None, decoder: Path | None = None,
        lora: Path | None = None, average: int | None = None, keep_input: bool | None = None, timed: int = 3,
        first_seed: int = 0, progress=print) -> dict[str, Any]:
    """Every object of `split` × seed first_seed, first_seed + 1, … (quick: 2 objects, 1 seed, 8 views, 5 steps,
    1 timed image); `average` and `keep_input` as `image-to-3d` takes them (None: its defaults)."""
    from ..distill.gsv3d.decoder import load_decoder
    from ..distill.gsv3d.generator import load_generator
    from ..distill.gsv3d.geometric import load_lora
    from ..distill.gsv3d.image_to_3d import GSV3D, ImageTo3DConfig

    defaults = ImageTo3DConfig()
    average = defaults.average if average is None else average
    keep_input = defaults.keep_input if keep_input is None else keep_input
    ImageTo3DConfig(views=views, steps=steps, guidance=guidance, average=average).check()
    if split not in SPLITS:
        raise RunError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    n, n_seeds = (2, 1) if quick else (SPLITS[split], seeds or 3)
    if quick:
        views, steps, timed = 8, 5, 1
    objs = split_objects(split, n)
    models = {"raw": load_generator(generator).eval(), "lora": load_lora(load_generator(generator), lora).eval(),
              "decoder": load_decoder(decoder)}
    if generator or decoder or lora:
        models["paths"] = GSV3D(models["lora"], models["decoder"])
    seed_ids = range(first_seed, first_seed + n_seeds)
    records = []
    for i, obj in enumerate(objs):
        for s in seed_ids:
            rec = _score(obj, split, i, s, models, views, steps, guidance, average, keep_input)
            records.append(rec)
            progress(f"{obj.spec.colour} {obj.spec.family} seed {s}: consistency raw {rec['consistency_raw']:.4f} "
                     f"lora {rec['consistency_lora']:.4f}; chamfer decoder {rec['chamfer_decoder']:.4f} lora "
                     f"{rec['chamfer_lora']:.4f}; novel PSNR {rec['psnr_novel_lora']:.2f} dB")
    cpu = _cpu_seconds(objs[:timed], models, views, steps, guidance, average, keep_input)
    per_seed = {m: [sum(r[m] for r in records if r["seed"] == s) / n for s in seed_ids] for m in METRICS}
    stats = {m: mean_std(v) for m, v in per_seed.items()}
    rows = [{"metric": m, "mean": stats[m][0], "seed_std": stats[m][1]} for m in METRICS] + records
    summary = {"split": split, "objects": n, "seeds": n_seeds, "first_seed": first_seed, "views": views,
               "steps": steps, "guidance": guidance, "average": average, "keep_input": keep_input,
               **{m: stats[m][0] for m in METRICS}, **{f"{m}_std": stats[m][1] for m in METRICS},
               "psnr_novel": stats["psnr_novel_lora"][0], "seconds_per_image": sum(cpu) / len(cpu),
               "lora_more_consistent_than_raw": _beyond(stats["consistency_lora"], stats["consistency_raw"], True),
               "lora_chamfer_beats_decoder": _beyond(stats["chamfer_lora"], stats["chamfer_decoder"], True)}
    return {"rows": rows, "summary": summary}
