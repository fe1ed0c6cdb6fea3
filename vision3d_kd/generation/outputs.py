"""What `v3kd generate` writes after the loop, reusing the export code: RUN/mesh.glb (marching cubes of
the density for fields, TSDF fusion for splats, vertex colours) and RUN/turntable.mp4 (an orbit at the
middle of the training elevations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..cameras import orbit_cameras
from ..export.mesh_io import write_mesh
from ..export.run_mesh import MeshOptions, mesh_from_run
from ..trainer import load_run, render_settings_from

__all__ = ["write_outputs"]


def write_outputs(run: Path, mesh_resolution: int = 128, video_frames: int = 48, video_size: int = 128,
                  mesh: bool = True, video: bool = True) -> dict[str, Any]:
    """Write RUN/mesh.glb and RUN/turntable.mp4; returns {mesh_faces, mesh_vertices} (0 faces: empty)."""
    from ..cli.render import orbit_frames, write_video

    run = Path(run)
    info: dict[str, Any] = {}
    if mesh:
        m = mesh_from_run(run, MeshOptions(resolution=mesh_resolution, views=24, min_component=0.05))
        if len(m.faces):
            write_mesh(m, run / "mesh.glb")
        info.update(mesh_faces=int(len(m.faces)), mesh_vertices=int(len(m.vertices)))
    if video:
        model, grid, cfg = load_run(run)
        r = cfg["render"]
        cams = orbit_cameras(video_frames, float(r["radius"]), float(r["elevation_deg"]), float(r["fov_y_deg"]),
                             video_size, video_size)
        frames = orbit_frames(model, grid, render_settings_from(cfg), cams, "white", progress=False)
        write_video(frames, run / "turntable.mp4", fps=24)
    return info
