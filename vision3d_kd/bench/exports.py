"""`v3kd bench exports`: what we export, timed and opened by other people's software.

On the lego scene (`../shared/data`): a hash-grid run (1500 steps) is exported as GLB at 256³ in this process
(seconds per stage: iso-level, hidden-interior test, lattice + marching cubes, colours, write); the Khronos
glTF validator reads that GLB, a textured GLB of the same run and a vertex-coloured and a textured GLB of an
analytic ball; three.js (GLTFLoader, white hemisphere light of intensity π) draws the lego GLB from a held-out
camera, compared with the run's own render of that view; a splats run (600 steps) is written as 3DGS PLY,
.splat and .spz and drawn by GaussianSplats3D from the same camera, compared with our rasterizer's image.
Colour errors: the largest difference of a 4x4 grid cell's mean colour and of the object's mean colour.
Needs node, the npm clients (`bash tools/setup.sh --test`) and chromium for the viewer rows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import RunError

if TYPE_CHECKING:
    from ..export.mesh import Mesh

__all__ = ["run", "ball_mesh"]


def _fit(data: Path, out: Path, field: str, steps: int, quick: bool) -> Path:
    """Fit (or reuse) a run of `field` on the lego data for a fixed number of steps."""
    if not (out / "metrics.json").is_file():
        cmd = [sys.executable, "-m", "vision3d_kd.cli.main", "fit", str(data), "--field", field, "--out", str(out),
               "--steps", str(steps), "--max-seconds", "0", "--no-progress", "--device", "cpu",
               *(["--downscale", "2"] if quick else []), *(["--resume"] if (out / "config.json").is_file() else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RunError(f"fit {field}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    return out


def ball_mesh(textured: bool) -> Mesh:
    """An analytic ball (radius 0.8, 40³ marching cubes) coloured by position, (p + 1) / 2 clipped to
    [0, 1]: vertex colours, or a 64² baked texture."""
    from ..export.mesh import mesh_from_volume
    from ..export.texture import bake_texture

    x = np.linspace(-1.5, 1.5, 40)
    xx, yy, zz = np.meshgrid(x, x, x, indexing="ij")
    mesh = mesh_from_volume((0.8 - np.sqrt(xx**2 + yy**2 + zz**2)).astype(np.float32), 0.0,
                            torch.tensor([[-1.5] * 3, [1.5] * 3]))

    def colour(p: np.ndarray, n: np.ndarray | None) -> np.ndarray:
        return np.clip((p + 1.0) / 2.0, 0, 1)

    if textured:
        return bake_texture(mesh, colour, size=64)
    mesh.colors = colour(mesh.vertices, None).astype(np.float32)
    return mesh


def _validate_all(base: Path, glbs: list[Path]) -> list[dict[str, Any]]:
    from ..export.mesh_io import write_mesh
    from .clients import validate_gltf

    write_mesh(ball_mesh(False), base / "ball-colours.glb")
    write_mesh(ball_mesh(True), base / "ball-textured.glb")
    rows = []
    for glb in [*glbs, base / "ball-colours.glb", base / "ball-textured.glb"]:
        report = validate_gltf(glb)
        rows.append({"check": f"gltf-validator {glb.name}", "errors": report["errors"],
                     "warnings": report["warnings"]})
    return rows


def run(quick: bool = False, data: Path | None = None, runs_dir: Path | None = None,
        resolution: int | None = None) -> dict[str, Any]:
    """Every check above (quick: 100/150 training steps at half resolution, 128³); returns {rows, summary}."""
    from ..data.axes import up_rotation
    from ..data.splat_io import write_splats
    from ..export.run_export import export_run, run_view
    from ..export.run_mesh import MeshConfig
    from ..render.image import render
    from ..runs import load_run, render_settings_from
    from .clients import colour_errors, show
    from .fit_lego import default_lego_path

    data = Path(data) if data else default_lego_path()
    base = Path(runs_dir) if runs_dir else Path("bench/runs/exports" + ("-quick" if quick else ""))
    base.mkdir(parents=True, exist_ok=True)
    res = resolution or (128 if quick else 256)
    field_run = _fit(data, base / "lego-hashgrid", "hashgrid", 100 if quick else 1500, quick)
    glb = base / f"lego-{res}.glb"
    done = export_run(field_run, "glb", glb, MeshConfig(resolution=res))
    seconds = round(sum(done["stages"].values()), 1)
    rows: list[dict[str, Any]] = [{"check": f"lego GLB export at {res}³", "seconds": seconds, "faces": done["faces"],
                                   **{f"s_{k.split()[0]}": v for k, v in done["stages"].items()}}]
    textured = base / "lego-textured.glb"
    if not textured.is_file():
        export_run(field_run, "glb", textured, MeshConfig(resolution=res, texture=True, faces=100_000))
    rows += _validate_all(base, [glb, textured])

    cams = run_view(field_run, 200 if not quick else 100, azimuth_deg=33.0)
    field, grid, cfg = load_run(field_run)
    with torch.no_grad():
        out = render(field, cams, 0, grid, render_settings_from(cfg), "white")
    theirs = show("gltf.html", glb, cams, 0, up_rotation("+y"), base / "three.png")
    three = colour_errors(theirs, out["rgb"].numpy(), out["opacity"].numpy() > 0.5)
    rows.append({"check": "three.js GLTFLoader, lego GLB", "cell_error": round(three["cell"], 4),
                 "colour_error": round(three["object"], 4)})

    splats_run = _fit(data, base / "lego-splats", "splats", 150 if quick else 600, quick)
    model, _, _ = load_run(splats_run)
    with torch.no_grad():
        ours = render(model, cams, 0, None, None, "white")
    worst = 0.0
    for suffix, up in ((".ply", "-y"), (".splat", "-y"), (".spz", "+y")):
        path = base / f"lego-splats{suffix}"
        write_splats(model.to_params(), path)
        img = show("splats.html", path, cams, 0, up_rotation(up), base / f"splats3d{suffix}.png")
        err = colour_errors(img, ours["rgb"].numpy(), ours["opacity"].numpy() > 0.5)
        worst = max(worst, err["object"])
        rows.append({"check": f"GaussianSplats3D, lego splats {suffix}", "cell_error": round(err["cell"], 4),
                     "colour_error": round(err["object"], 4)})
    validator = [r for r in rows if r["check"].startswith("gltf-validator")]
    summary = {"resolution": res, "lego_glb_256_s" if res == 256 else f"lego_glb_{res}_s": seconds,
               "gltf_validator_errors": sum(r["errors"] for r in validator),
               "gltf_validator_warnings": sum(r["warnings"] for r in validator),
               "three_colour_error": round(three["object"], 4), "splats3d_colour_error": round(worst, 4)}
    return {"rows": rows, "summary": summary}
