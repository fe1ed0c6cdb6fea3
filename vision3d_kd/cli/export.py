"""`v3kd export RUN --format F --out FILE` and `v3kd import-splats FILE --out RUN`."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError, RunError

__all__ = ["register", "export_command", "import_command"]

SPLAT_FORMATS = ("3dgs-ply", "splat", "spz")
MESH_FORMATS = ("glb", "obj", "ply")


def export_command(
    run: Path = typer.Argument(..., help="Run directory written by `v3kd fit` (splats runs for splat formats)."),
    fmt: str = typer.Option(..., "--format", help="3dgs-ply (3DGS viewer PLY), splat (antimatter15), spz (Niantic)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file; written atomically, never half-written."),
    spz_version: int = typer.Option(3, "--spz-version", help="spz: file version 2 or 3."),
    up: str = typer.Option("+z", "--up", help="spz: world up axis of the run (+z Blender scenes, +y already RUB)."),
) -> None:
    """Export a run's Gaussians to a splat file that common web/desktop viewers open."""
    from ..checkpoint import load_field
    from ..export import write_splats

    if fmt in MESH_FORMATS:
        known = ", ".join(SPLAT_FORMATS)
        raise ConfigError(f"--format {fmt}: mesh export is not implemented yet (splat formats: {known})")
    if fmt not in SPLAT_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(SPLAT_FORMATS + MESH_FORMATS)}, got {fmt!r}")
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
    from ..checkpoint import save_field
    from ..export import read_splats
    from ..fields.splats import GaussianSplats

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
