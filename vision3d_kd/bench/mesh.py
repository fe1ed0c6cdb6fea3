"""`v3kd bench mesh`: meshes of fitted procedural scenes against their exact surfaces.

For each shape: `v3kd data scene` renders posed views with ground truth, `v3kd fit` fits a field
(own process, wall-clock budget), `v3kd export --format glb` meshes it; the GLB is read back with
trimesh (and open3d when installed) and scored: symmetric Chamfer distance to the true surface as a
percentage of the box diagonal (target < 1 %), mean absolute vertex-colour error against the true
shaded colour (target < 0.1), faces and export seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError

__all__ = ["run", "SHAPES"]

SHAPES = ["sphere", "box", "torus", "composite"]
DISTORTION = 0.01  # distortion-loss weight of the fits: without it smooth procedural shapes fit as fog


def _cli(*args: str) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "vision3d_kd.cli.main", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"{' '.join(args[:2])}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    return time.perf_counter() - t0


def _score(glb: Path, shape: str) -> dict[str, Any]:

    from ..data.sdf import scene_sdf
    from ..export.mesh_io import linear_to_srgb, read_mesh
    from ..metrics import chamfer_to_sdf, surface_color_error

    scene = scene_sdf(shape)
    m = read_mesh(glb)  # back in the z-up world
    verts, faces = m.vertices, m.faces
    diag = float(np.linalg.norm(np.subtract(scene.aabb[1], scene.aabb[0])))
    row = {"faces": len(faces), "chamfer": chamfer_to_sdf(verts, faces, scene),
           "color_error": surface_color_error(verts, linear_to_srgb(m.colors), scene)}
    row["chamfer_pct_diag"] = 100 * row["chamfer"] / diag
    try:
        import open3d as o3d

        row["open3d_vertices"] = len(o3d.io.read_triangle_mesh(str(glb)).vertices)
    except ImportError:
        row["open3d_vertices"] = None
    return row


def run(quick: bool = False, budget_s: float | None = None, field: str = "hashgrid", shapes: list[str] | None = None,
        keep_dir: Path | None = None, resolution: int | None = None, distortion: float = DISTORTION) -> dict[str, Any]:
    """Fit every shape (default budget 300 s, quick 40 s; `distortion`: the fits' train.distortion) and
    score its GLB mesh; returns {rows, summary}."""
    budget = budget_s or (40.0 if quick else 300.0)
    res = resolution or (128 if quick else 256)
    base = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="v3kd-mesh-"))
    rows = []
    for shape in shapes or SHAPES:
        data, fit_run, glb = base / f"{shape}-data", base / f"{shape}-{field}", base / f"{shape}.glb"
        if not data.is_dir():
            _cli("data", "scene", shape, "--out", str(data), "--size", "64" if quick else "100")
        if not (fit_run / "metrics.json").is_file():
            _cli("fit", str(data), "--field", field, "--out", str(fit_run), "--max-seconds", str(budget),
                 "--set", f"train.distortion={distortion}", "--no-progress", "--device", "cpu")
        seconds = _cli("export", str(fit_run), "--format", "glb", "--out", str(glb), "--resolution", str(res),
                       "--device", "cpu")
        fitted = json.loads((fit_run / "metrics.json").read_text())
        row = {"shape": shape, "field": field, "fit_steps": fitted["steps"], "psnr_test": fitted["psnr_test"],
               "export_s": round(seconds, 1), **_score(glb, shape)}
        rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    summary = {"max_chamfer_pct_diag": max(r["chamfer_pct_diag"] for r in rows),
               "max_color_error": max(r["color_error"] for r in rows), "fit_budget_s": budget,
               "resolution": res, "field": field, "distortion": distortion}
    return {"rows": rows, "summary": summary}
