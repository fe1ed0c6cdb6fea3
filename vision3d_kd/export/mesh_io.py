"""Writing meshes and point clouds (trimesh does the encoding): GLB (glTF binary), OBJ (+MTL + PNG when
textured), PLY (binary, vertex colours). Every file is written to a temporary name and renamed, so an
interrupted export never leaves a half-written file; an OBJ's MTL and PNG are renamed before the OBJ.

glTF is +Y up by specification: GLB files get the run's z-up world rotated to y-up,
(x, y, z) -> (x, z, -y). OBJ and PLY keep the run's world coordinates.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .mesh import Mesh
from .splat_io import atomic_write

__all__ = ["MESH_FORMATS", "Z_UP_TO_GLTF", "mesh_to_trimesh", "write_mesh", "write_point_cloud"]

MESH_FORMATS = ("glb", "obj", "ply")
Z_UP_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=np.float32)


def mesh_to_trimesh(mesh: Mesh, vertices: np.ndarray | None = None, name: str = "material"):
    """A trimesh.Trimesh of `mesh` (vertex colours, or a textured material called `name`); vertices
    default to mesh.vertices."""
    vertices = mesh.vertices if vertices is None else vertices
    import trimesh
    from PIL import Image

    if mesh.texture is not None and mesh.uv is not None:
        material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(mesh.texture), name=name)
        visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
        return trimesh.Trimesh(vertices, mesh.faces, visual=visual, process=False)
    colors = None
    if mesh.colors is not None:
        rgb = (np.clip(mesh.colors, 0, 1) * 255 + 0.5).astype(np.uint8)
        colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices, mesh.faces, vertex_colors=colors, process=False)


def write_mesh(mesh: Mesh, path: Path, fmt: str | None = None) -> list[Path]:
    """Write `mesh` to `path` as fmt (default: the suffix); returns the files written (OBJ: + .mtl, .png)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in MESH_FORMATS:
        raise ConfigError(f"{path}: mesh format must be one of {', '.join(MESH_FORMATS)}, got {fmt!r}")
    if fmt == "glb":
        tm = mesh_to_trimesh(mesh, mesh.vertices @ Z_UP_TO_GLTF.T, path.stem)
        data = tm.export(file_type="glb")
        atomic_write(path, lambda f: f.write(data))
        return [path]
    tm = mesh_to_trimesh(mesh, mesh.vertices, path.stem)
    if fmt == "ply":
        data = tm.export(file_type="ply", encoding="binary")
        atomic_write(path, lambda f: f.write(data))
        return [path]
    from trimesh.exchange.obj import export_obj

    textured = mesh.texture is not None
    mtl = path.with_suffix(".mtl").name
    text, files = export_obj(tm, include_color=not textured, include_texture=textured, return_texture=True,
                             mtl_name=mtl)
    written: list[Path] = []
    try:
        for name, blob in files.items():  # the material and its image first: the OBJ names them
            target = path.parent / name
            atomic_write(target, lambda f, b=blob: f.write(b))
            written.append(target)
        atomic_write(path, lambda f: f.write(text.encode()))
    except BaseException:
        for p in written:
            with contextlib.suppress(OSError):
                os.unlink(p)
        raise
    return [path, *written]


def write_point_cloud(points: np.ndarray, colors: np.ndarray, path: Path) -> Path:
    """Binary PLY point cloud: points [N,3] (world units), colours [N,3] RGB in [0,1] (uchar red/green/blue)."""
    import trimesh

    rgb = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
    cloud = trimesh.PointCloud(np.asarray(points, dtype=np.float32), colors=rgb)
    buf = io.BytesIO()
    cloud.export(buf, file_type="ply", encoding="binary")
    data = buf.getvalue()
    atomic_write(Path(path), lambda f: f.write(data))
    return Path(path)
