"""What `v3kd generate` writes after the loop, reusing the export code: RUN/mesh.glb (marching cubes of
the density for fields, TSDF fusion for splats, vertex colours) and RUN/turntable.mp4 (an orbit at the
middle of the training elevations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..export.mesh_io import write_mesh
from ..export.run_mesh import MeshConfig, mesh_from_run
from ..export.video import render_orbit

__all__ = ["write_outputs"]


def write_outputs(run: Path, mesh_resolution: int = 128, video_frames: int = 48, video_size: int = 128,
                  mesh: bool = True, video: bool = True) -> dict[str, Any]:
    """Write RUN/mesh.glb and RUN/turntable.mp4; returns {mesh_faces, mesh_vertices} (0 faces: empty)."""
    run = Path(run)
    info: dict[str, Any] = {}
    if mesh:
        m = mesh_from_run(run, MeshConfig(resolution=mesh_resolution, views=24, min_component=0.05))
        if len(m.faces):
            write_mesh(m, run / "mesh.glb")
        info.update(mesh_faces=int(len(m.faces)), mesh_vertices=int(len(m.vertices)))
    if video:
        render_orbit(run, run / "turntable.mp4", video_frames, fps=24, size=video_size, progress=False)
    return info
