"""`v3kd bench prior`: samples of a camera-aware prior scored against ground-truth renders.

Pairs: objects whose (family, colour) is HELD_OUT of the prior's training set (the prior must compose
them), each seen from a random text-to-3D camera (elevation -10-60°, any azimuth, radius 3.5); the
prompt is the world's caption plus the view suffix. For every pair the ground truth is the object
rendered from that camera (fixed default light). Scores:
- mask IoU between the sample's foreground (pixels away from white) and the true alpha mask;
- colour error: mean |Δ| of the mean colour inside each mask;
- view correctness, on pairs of view-asymmetric families (mug handle, house door, snowman nose, chair
  back, arrow head): the alternative is the same object turned 180° about the vertical axis, seen from
  the same camera under the same light (rendered as the opposite view with the light turned too), so the
  two differ only where the asymmetric part moves. Over the pixels where they differ (any channel by
  more than 0.1; pairs with fewer than MIN_PART_PIXELS such pixels are not checked), the sample must be
  closer (squared error) to the true object than to the turned one.
Also writes bench/results/prior_samples.png: ground truth (top) over samples (bottom) for 16 pairs."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.object_views import ELEVATION_RANGE, render_object
from ..data.objects import ASYMMETRIC, FIRST_COLOURS, HELD_OUT, TWO_COLOUR, ObjectSpec, caption, view_suffix
from ..data.procedural import Shading
from ..errors import ConfigError
from ..guidance.diffusers_prior import DiffusersPrior
from ..guidance.prior import CameraCondition
from ..guidance.sampling import ddim_sample
from ..metrics import foreground_mask, mask_iou, masked_color_error

__all__ = ["run", "pairs", "chosen_pairs", "score_sample", "view_correct"]

MIN_PART_PIXELS = 16  # fewer pixels telling the object from its turned self: the view cannot be checked


def pairs(n: int, seed: int = 0) -> list[tuple[ObjectSpec, float, float]]:
    """n (object, elevation, azimuth) pairs cycling over the HELD_OUT objects with random views."""
    rng = random.Random(seed)
    held = sorted(HELD_OUT)
    out = []
    for i in range(n):
        family, colour = held[i % len(held)]
        colour2 = rng.choice([c for c in FIRST_COLOURS if c != colour]) if family in TWO_COLOUR else None
        out.append((ObjectSpec(family, colour, colour2), rng.uniform(*ELEVATION_RANGE), rng.uniform(0.0, 360.0)))
    return out


def chosen_pairs(objects: list[str], n: int, seed: int = 0) -> list[tuple[ObjectSpec, float, float]]:
    """n (object, elevation, azimuth) pairs cycling over `objects` ("COLOUR FAMILY", e.g. "brown table"; a
    two-colour family gets a random second colour) with random views; an unknown word is a ConfigError."""
    rng = random.Random(seed)
    specs = []
    for text in objects:
        words = text.split()
        if len(words) != 2:
            raise ConfigError(f"--objects: {text!r} is not 'COLOUR FAMILY' (e.g. 'brown table')")
        colour, family = words
        colour2 = rng.choice([c for c in FIRST_COLOURS if c != colour]) if family in TWO_COLOUR else None
        specs.append(ObjectSpec(family, colour, colour2))
    return [(specs[i % len(specs)], rng.uniform(*ELEVATION_RANGE), rng.uniform(0.0, 360.0)) for i in range(n)]


def _truth(spec: ObjectSpec, elev: float, azim: float, radius: float, size: int) -> dict[str, torch.Tensor]:
    """rgb [2,3,H,W] of the object and of the object turned 180° (same camera and light), alpha [1,H,W]."""
    view = (torch.tensor([elev]), torch.tensor([azim]), torch.tensor([radius]))
    r = render_object(spec, *view, size)
    lx, ly, lz = Shading().light_dir  # turning the object = the opposite camera with the light turned too
    turned = render_object(spec, view[0], view[1] + 180.0, view[2], size, Shading(light_dir=(-lx, -ly, lz)))
    return {"rgb": torch.cat([r["rgb"], turned["rgb"]]).permute(0, 3, 1, 2), "alpha": r["alpha"]}


def view_correct(img: torch.Tensor, truth: torch.Tensor, turned: torch.Tensor) -> bool | None:
    """Whether img [3,H,W] is closer to the true object than to it turned 180°, over the pixels where
    those two differ; None when fewer than MIN_PART_PIXELS differ (the view cannot tell them apart)."""
    differ = (truth - turned).abs().amax(0) > 0.1
    if int(differ.sum()) < MIN_PART_PIXELS:
        return None
    err = [float(((img - g) ** 2).sum(0)[differ].sum()) for g in (truth, turned)]
    return err[0] < err[1]


def score_sample(spec: ObjectSpec, elev: float, azim: float, radius: float,
                 img: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
    """Scores of one sample img [3,H,W] against the truth (see the module docstring) and the true image."""
    gt = _truth(spec, elev, azim, radius, img.shape[-1])
    m_pred, m_true = foreground_mask(img), gt["alpha"][0] > 0.5
    rec: dict[str, Any] = {"family": spec.family, "colour": spec.colour, "object": f"{spec.colour} {spec.family}",
                           "iou": mask_iou(m_pred, m_true),
                           "colour_error": masked_color_error(img, gt["rgb"][0], m_pred, m_true)}
    if spec.family in ASYMMETRIC and (ok := view_correct(img, gt["rgb"][0], gt["rgb"][1])) is not None:
        rec["view_correct"] = ok
    return rec, gt["rgb"][0]


def run(quick: bool = False, prior_path: Path | None = None, n_pairs: int | None = None, steps: int | None = None,
        guidance: float = 7.5, seed: int = 0, batch: int = 25, grid_path: Path | None = None,
        objects: list[str] | None = None) -> dict[str, Any]:
    """Score the prior on n_pairs (default 60, quick 10) held-out pairs, or pairs of the given `objects`
    ("COLOUR FAMILY"; rows are then per object); returns {rows, summary}."""
    from ..assets import default_prior_path

    n = n_pairs or (10 if quick else 60)
    steps = steps or (20 if quick else 50)
    prior = DiffusersPrior(default_prior_path(prior_path))
    radius = 3.5
    todo = chosen_pairs(objects, n, seed) if objects else pairs(n, seed)
    t0 = time.perf_counter()
    samples = []
    for s in range(0, n, batch):
        chunk = todo[s: s + batch]
        prompts = [caption(spec) + view_suffix(el, az) for spec, el, az in chunk]
        full = torch.ones(len(chunk))
        cam = CameraCondition(torch.tensor([el for _, el, _ in chunk]), torch.tensor([az for _, _, az in chunk]),
                              full * radius) if prior.camera_conditioned else None
        samples.append(ddim_sample(prior, prompts, cam, steps, guidance, generator=torch.Generator().manual_seed(s)))
    sample_seconds = time.perf_counter() - t0
    images = torch.cat(samples)
    records, grid = [], []
    for (spec, el, az), img in zip(todo, images, strict=True):
        rec, gt = score_sample(spec, el, az, radius, img)
        records.append(rec)
        if len(grid) < 16:
            grid.append(torch.cat([gt, img], dim=1))
    if grid_path is not None:
        _write_grid(grid, grid_path)
    rows = []
    key = "object" if objects else "family"
    for group in sorted({r[key] for r in records}):
        rs = [r for r in records if r[key] == group]
        checked = [r["view_correct"] for r in rs if "view_correct" in r]
        rows.append({key: group, "pairs": len(rs), "mask_iou": float(np.mean([r["iou"] for r in rs])),
                     "iou_under_0.6": float(np.mean([r["iou"] < 0.6 for r in rs])),
                     "colour_error": float(np.mean([r["colour_error"] for r in rs])),
                     "view_checked": len(checked), "view_correct": float(np.mean(checked)) if checked else None})
    checked = [r["view_correct"] for r in records if "view_correct" in r]
    summary = {"mean_mask_iou": float(np.mean([r["iou"] for r in records])),
               "view_correct_rate": float(np.mean(checked)) if checked else None,
               "n_pairs": n, "n_view_checked": len(checked),
               "mean_colour_error": float(np.mean([r["colour_error"] for r in records])),
               "ddim_steps": steps, "guidance": guidance, "seconds_per_sample": sample_seconds / n}
    return {"rows": rows, "summary": summary}


def _write_grid(tiles: list[torch.Tensor], path: Path) -> None:
    from PIL import Image

    from ..checkpoint import atomic_write

    arr = (torch.cat(tiles, dim=2).permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: Image.fromarray(arr).save(f, format="PNG"))
