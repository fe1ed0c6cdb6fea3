"""`v3kd data ...`: write procedural data sets with ground truth (depth, normals, the SDF), or run structure
from motion on your own photos or video (`data process`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["data_app", "scene_command", "process_command"]

data_app = typer.Typer(
    help="Data sets: procedural scenes with ground truth (scene), or your own photos / video posed by "
         "structure from motion (process).",
    no_args_is_help=True,
)


@data_app.callback()
def _group() -> None:
    """Keep `data` a command group even while it has a single command."""


# options of the Blender-format scene that a --capture scene does not use, and the reverse
_SCENE_ONLY = ("n_train", "n_test", "size", "radius", "fov")
_CAPTURE_ONLY = ("n_views", "n_points", "scale")


def _refuse_unused(ctx: typer.Context, capture: bool) -> None:
    """An option given on the command line that the chosen kind of scene ignores is an error, not a no-op."""
    from ..errors import ConfigError

    for key in _SCENE_ONLY if capture else _CAPTURE_ONLY:
        source = ctx.get_parameter_source(key)  # an enum of typer's bundled click: compare by name
        if source is not None and source.name == "COMMANDLINE":
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} does not apply {'with' if capture else 'without'} --capture")


@data_app.command("scene")
def scene_command(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="Scene: sphere, box, torus, cylinder, cone or composite (or --layout)."),
    out: Path = typer.Option(..., "--out", "-o", help="New output folder (must not exist or be empty)."),
    n_train: int = typer.Option(50, "--n-train", help="Training views, random at elevation -30..80 deg."),
    n_test: int = typer.Option(10, "--n-test", help="Held-out test views on an orbit (20/50 deg elevation)."),
    size: int = typer.Option(64, "--size", help="Square image size in pixels."),
    radius: float = typer.Option(4.0, "--radius", help="Camera distance from the origin in scene units."),
    fov: float = typer.Option(40.0, "--fov", help="Field of view in degrees (horizontal = vertical)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the random cameras (and, with --capture, the textures)."),
    supersample: int | None = typer.Option(
        None, "--supersample", help="Rays per pixel side for anti-aliasing [default: 2; 3 with --capture].",
        show_default=False,
    ),
    capture: bool = typer.Option(
        False, "--capture",
        help="Simulate a hand-held phone capture instead: the object inside a textured room, seen through a "
        "barrel-distorted OPENCV lens from --n-views views of two sizes (160x120 and 120x160 times --scale), "
        "written as images/, COLMAP sparse/0, transforms.json, sparse_pc.ply and scene.json.",
    ),
    n_views: int = typer.Option(72, "--n-views", help="With --capture: hand-held views orbiting the object."),
    n_points: int = typer.Option(3000, "--n-points", help="With --capture: sparse SfM-like surface points."),
    scale: float = typer.Option(1.0, "--scale", help="With --capture: image size factor (1 = 160x120, 120x160)."),
    layout: Path = typer.Option(None, "--layout", help=(
        "Render the true composition of a layout file instead (`v3kd generate --layout`): each object of the "
        "bundled prior's world placed and scaled into its box; --radius defaults to 4 x the scene's half side.")),
) -> None:
    """Render scene NAME into OUT: transforms_{train,test}.json, RGBA PNGs, depth/normal .npy, scene.json
    (or, with --capture, a hand-held capture of it in a room)."""
    from ..data.capture_scene import write_capture_scene
    from ..data.procedural import write_scene
    from ..errors import ConfigError
    from ..generation.layout_truth import write_layout_scene

    _refuse_unused(ctx, capture)
    if (name is None) == (layout is None) or (layout is not None and capture):
        raise ConfigError("give a scene NAME or --layout FILE (one of them; --layout not with --capture)")
    if layout is not None:
        given = ctx.get_parameter_source("radius")
        name = layout.name
    columns = (
        TextColumn(f"rendering {name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("render", total=n_views if capture else n_train + n_test)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if layout is not None:
            path = write_layout_scene(layout, out, n_train=n_train, n_test=n_test, size=size,
                                      radius=radius if given is not None and given.name == "COMMANDLINE" else None,
                                      fov_deg=fov, seed=seed, supersample=2 if supersample is None else supersample,
                                      progress=progress)
        elif capture:
            path = write_capture_scene(
                name, out, n_views=n_views, supersample=3 if supersample is None else supersample, seed=seed,
                n_points=n_points, scale=scale, progress=progress,
            )
        else:
            path = write_scene(
                name, out, n_train=n_train, n_test=n_test, size=size, radius=radius, fov_deg=fov,
                seed=seed, supersample=2 if supersample is None else supersample, progress=progress,
            )
    if capture:
        typer.echo(f"wrote {path} ({n_views} hand-held views in a room, distorted lens)")
    else:
        typer.echo(f"wrote {path} ({n_train} train + {n_test} test views, {size}x{size})")


@data_app.command("process")
def process_command(
    source: Path = typer.Argument(..., help="A folder of photos (.jpg/.jpeg/.png) or a video file (.mp4, .mov, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="New output folder (must not exist or be empty)."),
    frames: int = typer.Option(300, "--frames", help="Video only: frames to sample evenly (the sharpest of "
                                                       "each neighbourhood)."),
    matcher: str = typer.Option("auto", "--matcher", help="Feature matching: auto (exhaustive up to 100 photos, "
                                                           "sequential for video), exhaustive or sequential."),
    camera_model: str = typer.Option("OPENCV", "--camera-model", help="COLMAP camera model to estimate: "
                                     "SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV or OPENCV_FISHEYE."),
    single_camera: bool = typer.Option(True, "--single-camera/--per-image-camera",
                                       help="One camera shared by all images, or intrinsics per image."),
    max_size: int = typer.Option(1600, "--max-size", help="Images whose long side exceeds this (pixels) are "
                                                           "downscaled to it."),
    principal_point: str = typer.Option("refine", "--principal-point",
                                        help="refine: bundle adjustment refines each camera's principal point; "
                                             "centre: it stays at the image centre (COLMAP's default)."),
    show_progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Pose the images of SOURCE by structure from motion (COLMAP, CPU) and write OUT: images/, sparse/0,
    transforms.json and sparse_pc.ply, ready for `v3kd fit OUT --refine-poses`."""
    from ..data.sfm import process_photos
    from ..errors import ConfigError

    if principal_point not in ("refine", "centre"):
        raise ConfigError(f"--principal-point must be refine or centre, got {principal_point!r}")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, disable=not show_progress) as bar:
        task = bar.add_task("starting", total=1)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        summary = process_photos(source, out, frames=frames, matcher=matcher, camera_model=camera_model,
                                 single_camera=single_camera, max_size=max_size,
                                 refine_principal_point=principal_point == "refine", progress=progress)
    typer.echo(f"wrote {summary['out']}: {summary['registered']} of {summary['images']} images registered, "
               f"{summary['points']} points, reprojection error {summary['reprojection_error_px']:.2f} px, "
               f"{summary['seconds']:.1f} s ({summary['matcher']} matching, {summary['camera_model']})")
    if summary["warnings"]:
        typer.echo("warning: " + "; ".join(summary["warnings"]))
    typer.echo(f"next: v3kd fit {summary['out']} --refine-poses  (the poses are estimates; the fit refines them)")
