"""`v3kd export RUN --format F --out FILE` (meshes, point clouds, splat files) and
`v3kd import-splats FILE --out RUN`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import ConfigError, RunError

__all__ = ["register", "export_command", "import_command"]

SPLAT_FORMATS = ("3dgs-ply", "splat", "spz")
MESH_FORMATS = ("glb", "obj", "ply")
FORMATS = (*MESH_FORMATS, "pointcloud", *SPLAT_FORMATS)


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
    spz_version: int = typer.Option(3, "--spz-version", help="spz: file version 2 or 3."),
    up: str = typer.Option("+z", "--up", help="spz: world up axis of the run (+z Blender scenes, +y already RUB)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Export a run: a mesh (GLB/OBJ/PLY), a point cloud (PLY) or its Gaussians (splat formats)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in SPLAT_FORMATS:
        _export_splats(run, fmt, out, spz_version, up)
        return
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: output directory {out.parent} does not exist")
    if preview is not None and preview.suffix.lower() != ".png":
        raise ConfigError(f"--preview {preview}: must be a .png file")
    from rich.progress import Progress

    from ..export.mesh_io import write_mesh, write_point_cloud
    from ..export.run_mesh import MeshConfig, mesh_from_run, point_cloud_from_run
    from .common import pick_device

    dev = pick_device(device)
    t0 = time.perf_counter()
    with Progress(transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, i: int, n: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=n)
            bar.update(tasks[stage], completed=i, total=n)

        if fmt == "pointcloud":
            pts, cols = point_cloud_from_run(run, views, max_points, device=dev,
                                             progress=lambda i, n: progress("render views", i, n))
            write_point_cloud(pts, cols, out)
            print(f"wrote {out} ({len(pts)} points) in {time.perf_counter() - t0:.1f} s")
            return
        opts = MeshConfig(resolution=resolution, level=level, min_component=min_component, faces=faces,
                           texture=texture, texture_size=texture_size, views=views, method=method,
                           fusion=fusion)
        mesh = mesh_from_run(run, opts, dev, progress)
        files = write_mesh(mesh, out, fmt)
        if preview is not None:
            files.append(_write_preview(run, mesh, preview, preview_size))
    extra = f", {len(files) - 1} side file(s)" if len(files) > 1 else ""
    print(f"wrote {out} ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {mesh.info['method']}"
          f"{extra}) in {time.perf_counter() - t0:.1f} s")


def _write_preview(run: Path, mesh, path: Path, size: int) -> Path:
    from ..cameras import orbit_cameras
    from ..checkpoint import atomic_write, read_config
    from ..export.raster import render_mesh

    if size < 8:
        raise ConfigError(f"--preview-size must be >= 8, got {size}")
    r = read_config(run).get("render") or {}
    cams = orbit_cameras(1, float(r.get("radius", 4.0)), float(r.get("elevation_deg", 30.0)),
                         float(r.get("fov_y_deg", 40.0)), size, size, azimuth_offset_deg=30.0)
    img = render_mesh(mesh, cams, 0)
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def _export_splats(run: Path, fmt: str, out: Path, spz_version: int, up: str) -> None:
    from ..export import write_splats
    from ..runs import load_field

    model, _ = load_field(run)
    if getattr(model, "name", "") != "splats":
        raise RunError(f"{run}: --format {fmt} needs a splats run (fit with --field splats)")
    options = {"version": spz_version, "up": up} if fmt == "spz" else {}
    write_splats(model.to_params(), out, fmt, **options)
    print(f"wrote {out} ({model.n} Gaussians, {fmt})")


def import_command(
    file: Path = typer.Argument(..., help="A .ply (3DGS layout), .splat or .spz file."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to create (then eval/render/export it)."),
    up: str = typer.Option("+z", "--up", help="spz: world up axis to convert to (+z or +y)."),
) -> None:
    """Create a splats run directory from a splat file."""
    from ..export import read_splats
    from ..fields.splats import GaussianSplats
    from ..runs import save_field

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: already exists and is not empty")
    options = {"up": up} if file.suffix.lower() == ".spz" else {}
    params = read_splats(file, **options)
    k = params["sh"].shape[1]
    degree = int(round(k**0.5)) - 1
    means = params["means"]
    pad = 0.05 * (means.max(0).values - means.min(0).values).clamp_min(1e-3)
    aabb = [(means.min(0).values - pad).tolist(), (means.max(0).values + pad).tolist()]
    splats = GaussianSplats(aabb=aabb, n=0, sh_degree=degree).set_params(params)
    splats.active_sh_degree.fill_(degree)
    save_field(out, splats, {"imported_from": str(file.resolve())})
    print(f"imported {splats.n} Gaussians (SH degree {degree}) from {file} -> {out}")


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("import-splats")(import_command)
