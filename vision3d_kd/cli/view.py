"""`v3kd view RUN`: local web viewer (viser) of a run's mesh, point cloud or Gaussian splats."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "view_command"]


def view_command(
    run: Path = typer.Argument(..., help="Run directory written by `v3kd fit` / `v3kd convert`."),
    port: int = typer.Option(8080, "--port", help="TCP port of the viewer (a busy port moves to the next free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 to share on the network)."),
    show: str = typer.Option("auto", "--show", help=(
        "What to show: auto (splats for a splats run, else the mesh), mesh, pointcloud, splats.")),
    resolution: int = typer.Option(192, "--resolution", help="Mesh: lattice points per axis for marching cubes."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (mesh / point cloud extraction)."),
) -> None:
    """Serve an interactive 3D view of RUN in the browser (orbit with the mouse); Ctrl-C stops it."""
    from ..viewer import start_viewer
    from .common import pick_device

    server = start_viewer(run, host, port, show, resolution, pick_device(device))
    print(f"viewer at http://{host}:{server.get_port()}  (Ctrl-C to stop)", flush=True)
    try:
        server.sleep_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def register(app: typer.Typer) -> None:
    app.command("view")(view_command)
