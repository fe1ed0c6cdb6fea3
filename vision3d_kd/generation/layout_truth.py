"""Known answers for a layout of the bundled prior's world: the true composition and per-object scores.

Each object's prompt is read as the bundled prior reads a prompt (`guidance.prompt_words.understand`); the
world's object is placed into its box at the box's uniform scale (`data.layout.placed_scene`).

Scores of a generated layout run, per object k (box B_k, centre c_k, scale s_k):
- `mass_in_box`: of the opacity mass nearer to B_k than to any other box (on a lattice over the student's
  box: per cell 1 − exp(−σ · cell side)), the share inside B_k — stray density anywhere counts against the
  nearest object;
- the text-to-3D scores (`scoring.score_run`: mask IoU over 8 views, colour error, the asymmetric part) of
  the run's part inside B_k seen in the object's own frame (`fields.placed`: what its clipped rays see) with
  the run's occupancy grid (what its renders show, floaters pruned per box), against the true object.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..data.layout import Layout, placed_scene, read_layout
from ..data.objects import ObjectSpec, build_object
from ..data.procedural import write_scene
from ..data.sdf import SDFScene
from ..errors import ConfigError
from ..fields.placed import PlacedField, splat_view
from ..guidance.prompt_words import refusal, understand
from ..render.volume import RenderConfig
from .scoring import score_run

__all__ = ["layout_specs", "truth_scene", "write_layout_scene", "mass_in_boxes", "score_layout_run"]

SINGLE_RENDER = {"radius": 3.5, "elevation_deg": 15.0, "elevation_range_deg": [-10.0, 60.0], "fov_y_deg": 40.0,
                 "width": 64, "height": 64}  # a lone object's view settings (what scoring's part level reads)


def layout_specs(layout: Layout) -> list[ObjectSpec]:
    """The world's object for each object prompt; ConfigError (the bundled prior's refusal) otherwise."""
    specs = []
    for k, o in enumerate(layout.objects):
        u = understand(o.prompt)
        if not u.ok:
            raise ConfigError(f"object {k + 1}: {refusal(o.prompt, u)}")
        specs.append(u.spec)
    return specs


def truth_scene(layout: Layout) -> SDFScene:
    """The true composition: every object's SDF placed into its box."""
    parts = [(build_object(spec), o) for spec, o in zip(layout_specs(layout), layout.objects, strict=True)]
    return placed_scene(parts, layout.scene_prompt()[:60])


def write_layout_scene(layout: Layout | str | Path, out: str | Path, n_train: int = 50, n_test: int = 10,
                       size: int = 64, radius: float | None = None, fov_deg: float = 40.0, seed: int = 0,
                       supersample: int = 2, progress=None) -> Path:
    """Render the true composition of `layout` as a Blender folder (`data.procedural.write_scene`) with
    layout.json beside scene.json; `radius` None: 4 × the half side of the scene's box. `layout`: a Layout
    or a layout file."""
    layout = layout if isinstance(layout, Layout) else read_layout(layout)
    scene = truth_scene(layout)
    half = max(max(abs(v) for v in row) for row in scene.aabb)
    return write_scene(scene, out, n_train, n_test, size, 4.0 * half if radius is None else radius, fov_deg, seed,
                       supersample, progress, extra_files={"layout.json": json.dumps(layout.to_dict(), indent=1)})


@torch.no_grad()
def mass_in_boxes(model, layout: Layout, resolution: int = 96) -> list[float]:
    """Per object, the share of the opacity mass nearer to its box than to any other that lies inside its box
    (module docstring); nan where no mass is near it."""
    lo, hi = model.aabb[0].cpu(), model.aabb[1].cpu()
    t = (torch.arange(resolution) + 0.5) / resolution
    axes = [lo[i] + (hi[i] - lo[i]) * t for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    cell = float((hi - lo).max()) / resolution
    if getattr(model, "name", "") == "splats":
        raise ConfigError("mass_in_boxes: splat students have no density lattice; score them by their renders")
    sigma = torch.cat([model.density(p.to(model.aabb)).cpu().reshape(-1) for p in pts.split(1 << 16)])
    mass = 1.0 - torch.exp(-sigma * cell)
    boxes = torch.tensor([o.box for o in layout.objects])  # [K, 6]
    gap = torch.maximum(boxes[None, :, :3] - pts[:, None], pts[:, None] - boxes[None, :, 3:]).clamp_min(0)
    dist = gap.norm(dim=-1)  # [N, K]: 0 inside
    nearest = dist.argmin(dim=1)
    out = []
    for k in range(len(layout.objects)):
        mine = nearest == k
        total = float(mass[mine].sum())
        out.append(float(mass[mine & (dist[:, k] == 0)].sum()) / total if total > 0 else math.nan)
    return out


def score_layout_run(model, grid, settings: RenderConfig, layout: Layout, n_views: int = 8
                     ) -> list[dict[str, Any]]:
    """Per object: mass_in_box and `score_run`'s scores of the run's part in its box, in its frame (module
    docstring), where the run's occupancy `grid` (None: everywhere) marks cells occupied — as a lone
    object is scored, and as the run renders (pruned floaters gone); the views march the box without skipping."""
    specs = layout_specs(layout)
    masses = mass_in_boxes(model, layout) if getattr(model, "name", "") != "splats" else [math.nan] * len(specs)
    rows = []
    for k, (o, spec) in enumerate(zip(layout.objects, specs, strict=True)):
        box = o.aabb()
        if getattr(model, "name", "") == "splats":
            view = splat_view(model, box, torch.tensor(o.centre), o.scale)
        else:
            view = PlacedField(model, torch.tensor(o.centre), o.scale, box, None if grid is None else grid.occupied)
        step = RenderConfig(step_size=settings.step_size / o.scale, opacity_min=0.0)
        scores = score_run(view, None, step, SINGLE_RENDER, spec, n_views)
        scores.pop("rgb", None)
        rows.append({"object": k, "prompt": o.prompt, "mass_in_box": masses[k], **scores})
    return rows
