"""`v3kd data ...`: write procedural data sets with ground truth (depth, normals, the SDF)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["data_app", "scene_command"]

data_app = typer.Typer(
    help="Procedural data sets with ground truth: rendered SDF scenes in Blender format.",
    no_args_is_help=True,
)


@data_app.callback()
def _group() -> None:
    """Keep `data` a command group even while it has a single command."""


@data_app.command("scene")
def scene_command(
    name: str = typer.Argument(..., help="Scene: sphere, box, torus, cylinder, cone or composite."),
    out: Path = typer.Option(..., "--out", "-o", help="New output folder (must not exist or be empty)."),
    n_train: int = typer.Option(50, "--n-train", help="Training views, random at elevation -30..80 deg."),
    n_test: int = typer.Option(10, "--n-test", help="Held-out test views on an orbit (20/50 deg elevation)."),
    size: int = typer.Option(64, "--size", help="Square image size in pixels."),
    radius: float = typer.Option(4.0, "--radius", help="Camera distance from the origin in scene units."),
    fov: float = typer.Option(40.0, "--fov", help="Field of view in degrees (horizontal = vertical)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random training cameras."),
    supersample: int = typer.Option(2, "--supersample", help="Rays per pixel side for anti-aliasing."),
) -> None:
    """Render scene NAME into OUT: transforms_{train,test}.json, RGBA PNGs, depth/normal .npy, scene.json."""
    from ..data.procedural import write_scene

    columns = (
        TextColumn(f"rendering {name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("render", total=n_train + n_test)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        path = write_scene(
            name, out, n_train=n_train, n_test=n_test, size=size, radius=radius, fov_deg=fov,
            seed=seed, supersample=supersample, progress=progress,
        )
    typer.echo(f"wrote {path} ({n_train} train + {n_test} test views, {size}x{size})")
