"""Local web viewer of a run (viser, the viewer nerfstudio uses; it serves its own client, no network
needed): a splats run shows its Gaussians, a field run its exported coloured mesh (or point cloud),
z up, the camera starting where the run's training cameras look from."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import read_config
from ..errors import ConfigError
from ..export.mesh import Mesh

__all__ = ["SHOW", "splat_arrays", "start_viewer"]

SHOW = ("auto", "mesh", "pointcloud", "splats")


def splat_arrays(splats) -> dict[str, np.ndarray]:
    """viser's Gaussian layout of a GaussianSplats model: centers [N,3], covariances [N,3,3] (world units²),
    rgbs [N,3] (degree-0 colour in [0,1]), opacities [N,1]."""
    from ..fields.splats import SH_C0
    from ..render.splat_project import covariance_3d

    p = splats.to_params()
    cov = covariance_3d(torch.nn.functional.normalize(p["quats"], dim=-1), torch.exp(p["log_scales"]))
    rgb = (0.5 + SH_C0 * p["sh"][:, 0]).clamp(0, 1)
    return {"centers": p["means"].numpy(), "covariances": cov.numpy(), "rgbs": rgb.numpy(),
            "opacities": torch.sigmoid(p["opacity_logits"]).reshape(-1, 1).numpy()}


def _camera_start(render: dict[str, Any]) -> tuple[np.ndarray, float]:
    """Initial viewer camera position (world, z up) from the run's mean training elevation and distance."""
    r = float(render.get("radius", 4.0))
    elev = math.radians(float(render.get("elevation_deg", 30.0)))
    azim = math.radians(30.0)
    pos = r * np.array([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    return pos, float(render.get("fov_y_deg", 40.0))


def start_viewer(run: Path, host: str = "127.0.0.1", port: int = 8080, show: str = "auto",
                 resolution: int = 192, device: torch.device | str = "cpu"):
    """Start a viser server showing `run` (show: auto = splats for a splats run, else mesh) and return it;
    the caller keeps the process alive (server.sleep_forever) and stops it (server.stop)."""
    import viser

    from ..export.mesh_io import mesh_to_trimesh
    from ..export.run_mesh import MeshConfig, mesh_from_run, point_cloud_from_run
    from ..runs import load_field

    if show not in SHOW:
        raise ConfigError(f"--show must be one of {', '.join(SHOW)}, got {show!r}")
    if not 0 <= port < 65536:
        raise ConfigError(f"--port must be in [0, 65535], got {port}")
    cfg = read_config(run)
    model, _ = load_field(run)
    splats = getattr(model, "name", "") == "splats"
    show = ("splats" if splats else "mesh") if show == "auto" else show
    if show == "splats" and not splats:
        raise ConfigError("--show splats needs a splats run")
    mesh: Mesh | None = None
    if show == "mesh":
        mesh = mesh_from_run(run, MeshConfig(resolution=resolution, views=24), device)
    elif show == "pointcloud":
        points, colors = point_cloud_from_run(run, views=24, max_points=300_000, device=device)
    server = viser.ViserServer(host=host, port=port, verbose=False)
    server.scene.set_up_direction("+z")
    if show == "splats":
        server.scene.add_gaussian_splats("/splats", **splat_arrays(model.cpu()))
    elif mesh is not None:
        server.scene.add_mesh_trimesh("/mesh", mesh_to_trimesh(mesh, gltf=True))  # viser ships it as GLB
    else:
        size = float((model.aabb[1] - model.aabb[0]).max()) / 400
        server.scene.add_point_cloud("/points", points, colors, point_size=size)
    pos, fov = _camera_start(cfg.get("render") or {})
    server.initial_camera.position = tuple(pos)
    server.initial_camera.look_at = (0.0, 0.0, 0.0)
    server.initial_camera.up = (0.0, 0.0, 1.0)
    server.initial_camera.fov = math.radians(fov)
    return server
