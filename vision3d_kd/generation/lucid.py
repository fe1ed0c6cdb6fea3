"""LucidDreaming runs (`v3kd generate --layout`): the student sized to a layout, what the prior is told per
object, and the occupancy grid kept to the boxes after the loop.

The student is the single-object one scaled to the scene (`layout_setup`): its box holds every box; the
marching step (and the colour-smoothness offset) shrinks with the smallest object's scale and a hash grid's
resolutions (and the occupancy grid's, up to 128) grow by the ratio of scene to smallest object, so each
object gets the samples and cells a lone object gets; with `generate.box_tables` (the default) each box gets a
hash table of its own of a lone object's size, a one-hot of the point's box after its features, and with
`generate.box_density_heads` and `generate.box_heads` (the defaults) a density MLP and a colour head of its
own (`fields/hashgrid.py`), and the field has no density outside every box (`fields/blob.py` empty_outside) —
so objects share no parameter; without box tables the one table grows by 2·log2 of that ratio (at most 2^19
entries). `generate.box_own_scale` (off) sizes each object by its own scale instead of the smallest one's: its
box table's resolutions at its own ratio (`field.box_resolution_scale`), and the student marches and
differences its clipped rays at its own lone step (`students.FieldStudent`). Dense grids and TensoRF keep
their resolution (their memory grows with its cube). Unless set, a layout's renders skip the gradient pass
for samples of opacity < 1e-4 and give −∇σ normals only to samples of weight ≥ 1e-3 (the rest face the
camera): a third less time on validation layouts (bench/TUNING.md). A layout's colour-smoothness weight
(`render.shading`) is `generate.box_albedo_smooth`, not a lone run's `generate.lambda_albedo_smooth`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from ..data.layout import Layout, read_layout
from ..errors import ConfigError
from ..fields import build_field
from ..fields.base import points_in_boxes
from ..runs import load_run, save_occupancy
from .config import GenerationConfig

__all__ = ["layout_setup", "baseline_setup", "scene_ratio", "clear_outside_boxes", "pick_layout",
           "MAX_OCC_RESOLUTION"]

MAX_OCC_RESOLUTION = 128
MAX_LOG2_TABLE = 19
OPACITY_MIN, SHADE_WEIGHT_MIN = 1e-4, 1e-3  # generate.opacity_min, shade_weight_min with a layout (bench/TUNING.md)


def scene_ratio(setup: GenerationConfig, layout: Layout, scale: float | None = None) -> float:
    """How many times finer the student must be than a single generation's: (scene half-side / object
    scale) / (setup's box half-side / 1), at least 1; `scale` None: the smallest object's."""
    scale = min(o.scale for o in layout.objects) if scale is None else scale
    return max(1.0, (layout.extent() / scale) / setup.generate.aabb)


def layout_setup(setup: GenerationConfig, layout: Layout) -> GenerationConfig:
    """`setup` for a student of `layout` (module docstring): box, step, occupancy and hash resolutions."""
    g = setup.generate
    ratio = scene_ratio(setup, layout)
    shrink = min(min(o.scale for o in layout.objects), 1.0)  # the smallest object's scale, at most 1
    gen = dataclasses.replace(g, aabb=max(layout.extent() * 1.02, g.aabb), step_size=g.step_size * shrink,
                              albedo_smooth_step=g.albedo_smooth_step * shrink,
                              lambda_albedo_smooth=g.box_albedo_smooth,
                              opacity_min=OPACITY_MIN if g.opacity_min is None else g.opacity_min,
                              shade_weight_min=SHADE_WEIGHT_MIN if g.shade_weight_min is None else g.shade_weight_min,
                              occ_resolution=min(MAX_OCC_RESOLUTION, max(g.occ_resolution,
                                                                         int(round(g.occ_resolution * ratio)))))
    field = dict(setup.field)
    if g.student == "hashgrid" and ratio > 1.0:
        eff = build_field({**field, "field": "hashgrid"}).to_dict()
        field["base_resolution"] = int(round(eff["base_resolution"] * ratio))
        field["max_resolution"] = int(round(eff["max_resolution"] * ratio))
        if not g.box_tables:
            field["log2_table_size"] = min(MAX_LOG2_TABLE, eff["log2_table_size"] + int(round(2 * math.log2(ratio))))
    if g.student == "hashgrid" and g.box_tables:
        field["box_tables"] = [list(o.box) for o in layout.objects]
        field["box_heads"] = bool(g.box_heads)
        field["box_density_heads"] = bool(g.box_density_heads)
        if g.box_own_scale:  # each table at its own object's ratio, not the smallest object's
            field["box_resolution_scale"] = [scene_ratio(setup, layout, o.scale) / ratio for o in layout.objects]
    return dataclasses.replace(setup, generate=gen, field=field)


def baseline_setup(setup: GenerationConfig, layout: Layout) -> GenerationConfig:
    """Plain SDS on a whole layout (the comparison LucidDreaming is measured against): the layout's student
    (`layout_setup`) with the single blob, the cameras' distances scaled to frame every box (`Layout.span_scale`)
    and a single object's colour-smoothness weight (`generate.box_albedo_smooth` is LucidDreaming's)."""
    big = layout_setup(dataclasses.replace(setup, generate=dataclasses.replace(setup.generate, box_tables=False)),
                       layout)
    k = layout.span_scale()
    g = dataclasses.replace(big.generate, radius=tuple(r * k for r in big.generate.radius),  # type: ignore[arg-type]
                            blob_radius=big.generate.blob_radius * k,
                            lambda_albedo_smooth=setup.generate.lambda_albedo_smooth)
    return dataclasses.replace(big, generate=g)


@torch.no_grad()
def clear_outside_boxes(run: Path, layout: Layout) -> float:
    """Mark every occupancy cell of RUN whose centre is outside all boxes empty (no object's loss ever saw
    it, so what is there is noise) and save the grid; returns the share of cells cleared (0 without a grid)."""
    _, grid, _ = load_run(run)
    if grid is None:
        return 0.0
    centres = grid.cell_centres().cpu()
    keep = points_in_boxes(centres, torch.tensor([o.box for o in layout.objects])).any(dim=1).to(grid.binary.device)
    cleared = grid.binary & ~keep
    grid.binary &= keep
    save_occupancy(run, grid)
    return float(cleared.float().mean())


def pick_layout(path: str | Path | None, sentence: str | None, llm: str | Path | None) -> Layout | None:
    """The layout of `v3kd generate`: read from `path`, or written for `sentence` by the rules
    (`layout_words`) or by the local language model `llm` (`layout_llm`); None when none is asked for."""
    if path is not None and sentence is not None:
        raise ConfigError("give either --layout FILE or --layout-from TEXT, not both")
    if llm is not None and sentence is None:
        raise ConfigError("--llm writes the layout of --layout-from TEXT; give that sentence too")
    if path is not None:
        return read_layout(path)
    if sentence is None:
        return None
    if llm is not None:
        from .layout_llm import layout_from_llm

        return layout_from_llm(sentence, llm)
    from .layout_words import layout_from_text

    return layout_from_text(sentence)
