"""`v3kd export RUN --format F --out FILE` (meshes, point clouds, splat files) and
`v3kd import-splats FILE --out RUN`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

__all__ = ["register", "export_command", "import_command"]


def export_command(
    run: Path = typer.Argument(..., help="Run directory written by `v3kd fit` / `v3kd convert`."),
    fmt: str = typer.Option(..., "--format", help=(
        "glb / obj / ply: coloured triangle mesh (glb is +Y up as glTF requires; obj + mtl + png with "
        "--texture); pointcloud: PLY of surface points seen from views around the scene; 3dgs-ply, splat, "
        "spz: Gaussians of a splats run.")),
    out: Path = typer.Option(..., "--out", "-o", help="Output file; written atomically, never half-written."),
    resolution: int = typer.Option(256, "--resolution", help="Mesh: lattice points per axis over the run's box."),
    level: float = typer.Option(None, "--level", help=(
        "Mesh (density method): iso-density in 1/scene-unit (default: the density where rendered rays "
        "reach opacity 0.5, median over views of the run).")),
    faces: int = typer.Option(None, "--faces", help="Mesh: decimate to about this many faces (default: keep all)."),
    min_component: float = typer.Option(0.05, "--min-component", help=(
        "Mesh: drop floaters, i.e. connected parts smaller than this fraction of the largest (0 keeps all).")),
    texture: bool = typer.Option(False, "--texture", help="Mesh: bake a UV texture (xatlas), not vertex colours."),
    texture_size: int = typer.Option(1024, "--texture-size", help="Mesh: texture width and height in pixels."),
    method: str = typer.Option("auto", "--method", help=(
        "Mesh: density (marching cubes of a field's density), tsdf (fusion of rendered depth; any run), "
        "auto (density for fields, tsdf for splats).")),
    fusion: str = typer.Option("auto", "--fusion", help=(
        "Mesh (tsdf method): open3d (UniformTSDFVolume; needs the open3d extra), torch (built in), or auto "
        "(open3d when installed).")),
    views: int = typer.Option(60, "--views", help="Number of rendered views around the scene (visibility, tsdf, "
                              "pointcloud)."),
    preview: Path = typer.Option(None, "--preview", help=(
        "Mesh: also write a PNG of the exported mesh rendered from the run's mean training elevation.")),
    preview_size: int = typer.Option(512, "--preview-size", help="Mesh: preview image width and height."),
    max_points: int = typer.Option(1_000_000, "--max-points", help="pointcloud: keep at most this many points."),
    spz_version: int = typer.Option(2, "--spz-version", help=(
        "spz: file version 2 (default: every viewer tried opens it), 3 (finer rotations) or 4 (ZSTD streams, "
        "what Niantic's library writes).")),
    up: str = typer.Option(None, "--up", help=(
        "Axis of the file that points up: +z (the run's world), +y or -y. Default per format: glb +y (glTF's "
        "rule, the only one allowed), obj/ply/pointcloud +z, 3dgs-ply/splat -y (the 3DGS/COLMAP frame splat "
        "viewers assume), spz +y (RUB, its specification).")),
    frame: str = typer.Option("normalized", "--frame", help=(
        "normalized: the frame the run was trained in (+Z up, centred); capture: the capture's own frame "
        "(COLMAP / transforms.json poses, before pose normalisation).")),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Export a run: a mesh (GLB/OBJ/PLY), a point cloud (PLY) or its Gaussians (splat formats)."""
    from ..export.run_export import export_run
    from ..export.run_mesh import MeshConfig
    from .common import pick_device, stage_bars

    opts = MeshConfig(resolution=resolution, level=level, min_component=min_component, faces=faces, texture=texture,
                      texture_size=texture_size, views=views, method=method, fusion=fusion)
    t0 = time.perf_counter()
    with stage_bars() as progress:
        res = export_run(run, fmt, out, opts, max_points=max_points, spz_version=spz_version, up=up, preview=preview,
                         preview_size=preview_size, device=pick_device(device), progress=progress,
                         frame=frame)
    seconds = time.perf_counter() - t0
    if "gaussians" in res:
        print(f"wrote {out} ({res['gaussians']} Gaussians, {fmt})")
    elif "points" in res:
        print(f"wrote {out} ({res['points']} points) in {seconds:.1f} s")
    else:
        files = res["files"]
        extra = f", {len(files) - 1} side file(s)" if len(files) > 1 else ""
        print(f"wrote {out} ({res['vertices']} vertices, {res['faces']} faces, {res['method']}{extra}) in "
              f"{seconds:.1f} s")


def import_command(
    file: Path = typer.Argument(..., help="A .ply (3DGS layout), .splat or .spz file."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to create (then eval/render/export it)."),
    up: str = typer.Option(None, "--up", help=(
        "Axis of the file that points up: +z, +y or -y (default: the format's convention, as `v3kd export` "
        "writes it: 3dgs-ply/splat -y, spz +y).")),
) -> None:
    """Create a splats run directory from a splat file."""
    from ..export.splats import import_splats

    splats = import_splats(file, out, up)
    print(f"imported {splats.n} Gaussians (SH degree {splats.sh_degree}) from {file} -> {out}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("import-splats")(import_command)
