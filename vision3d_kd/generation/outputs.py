"""What `v3kd generate` does after the loop, reusing the export code: parts that nearly touch the main body
joined to it (`bridge.close_gaps`), then floaters pruned from a field's occupancy grid (`render/floaters.py`;
the share of rendered opacity outside the largest component measured before both and after), RUN/mesh.glb
(marching cubes of the density for fields, TSDF fusion for splats, vertex colours) and RUN/turntable.mp4 (an
orbit at the middle of the training elevations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import WEIGHTS, save_tensors
from ..export.mesh_io import write_mesh
from ..export.run_mesh import MeshConfig, mesh_from_run
from ..export.video import render_orbit
from ..fields.base import box_scales
from ..render.floaters import floater_share, prune_floaters
from ..runs import load_run, render_settings_from, save_occupancy
from .bridge import close_gaps
from .scoring import view_cameras

__all__ = ["write_outputs", "prune_run"]


def prune_run(run: Path, keep_ratio: float = 0.1, views: int = 8, max_gap: float = 0.0,
              boxes: list[list[float]] | None = None) -> dict[str, Any]:
    """Join RUN's parts within `max_gap` scene units of its main body (`close_gaps`; 0: not, else the
    weights are saved again), clear its occupancy grid outside the field's main components (`prune_floaters`)
    and save it; floater_share_before / _after (share of opacity over the `views` scoring cameras outside the
    largest component), floater_components, floater_cells_cleared, gaps_closed, gap_sizes. With a layout's
    `boxes` (world xmin..zmax): components per box, each at the marching step its object would have alone
    (the run's step times the box's scale over the smallest one's); parts within `max_gap` of a box's main
    body (in the object's frame, where it fits [−1, 1]³) are kept rather than joined, and no floater shares
    are measured (a scene's other objects are not floaters). {} for runs without a grid (splats)."""
    model, grid, cfg = load_run(run)
    if grid is None:
        return {}
    settings = render_settings_from(cfg)
    if boxes is not None:
        scales = box_scales(boxes).tolist()  # each object's scale
        steps = [settings.step_size * s / min(scales) for s in scales]
        stats = prune_floaters(model, grid, settings.step_size, keep_ratio, boxes=torch.tensor(boxes), box_steps=steps,
                               box_gaps=[max_gap * s for s in scales])
        save_occupancy(run, grid)
        return {"floater_components": stats["components"], "floater_cells_cleared": round(stats["cells_cleared"], 6)}
    cams, _ = view_cameras(views)
    before = floater_share(model, grid, cams, settings)
    joined = close_gaps(model, grid, settings.step_size, max_gap) if max_gap > 0 else {}
    stats = prune_floaters(model, grid, settings.step_size, keep_ratio)
    after = floater_share(model, grid, cams, settings)
    if joined.get("gaps_closed"):
        save_tensors(Path(run) / WEIGHTS, model.state_dict())
    save_occupancy(run, grid)
    return {"floater_share_before": round(before, 6), "floater_share_after": round(after, 6),
            "floater_components": stats["components"], "floater_cells_cleared": round(stats["cells_cleared"], 6),
            **{k: joined[k] for k in ("gaps_closed", "gap_sizes") if k in joined}}


def write_outputs(run: Path, mesh_resolution: int = 256, video_frames: int = 48, video_size: int = 256,
                  mesh: bool = True, video: bool = True, prune: float | None = 0.1,
                  max_gap: float = 0.0, min_component: float = 0.05,
                  boxes: list[list[float]] | None = None) -> dict[str, Any]:
    """Join parts within `max_gap` of the main body and prune floaters (keep ratio `prune`; None: neither),
    write RUN/mesh.glb (mesh parts below `min_component` of the largest one's size dropped; with `boxes`, a
    layout's, floaters pruned per box and each box's surface at its own iso-level) and RUN/turntable.mp4;
    returns `prune_run`'s figures and {mesh_faces, mesh_vertices} (0 faces: empty)."""
    run = Path(run)
    info: dict[str, Any] = prune_run(run, prune, max_gap=max_gap, boxes=boxes) if prune is not None else {}
    if mesh:
        m = mesh_from_run(run, MeshConfig(resolution=mesh_resolution, views=24, min_component=min_component,
                                          boxes=None if boxes is None else tuple(tuple(b) for b in boxes)))
        if len(m.faces):
            write_mesh(m, run / "mesh.glb")
        info.update(mesh_faces=int(len(m.faces)), mesh_vertices=int(len(m.vertices)))
    if video:
        render_orbit(run, run / "turntable.mp4", video_frames, fps=24, size=video_size, progress=False)
    return info
