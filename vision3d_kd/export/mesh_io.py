"""Writing meshes and point clouds (trimesh does the encoding): GLB (glTF binary), OBJ (+MTL + PNG when
textured), PLY (binary, vertex colours). Every file is written to a temporary name and renamed, so an
interrupted export never leaves a half-written file; an OBJ's MTL and PNG are renamed before the OBJ.

glTF is +Y up by specification: GLB files get the run's z-up world rotated to y-up,
(x, y, z) -> (x, z, -y), and hold linear vertex colours (COLOR_0 is linear; the fields' colours are
sRGB-encoded like the images they were fitted to). OBJ and PLY keep the run's world coordinates and
sRGB colours.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..errors import ConfigError
from .mesh import Mesh

__all__ = ["MESH_FORMATS", "Z_UP_TO_GLTF", "mesh_to_trimesh", "write_mesh", "write_point_cloud", "srgb_to_linear",
           "linear_to_srgb"]

MESH_FORMATS = ("glb", "obj", "ply")
Z_UP_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=np.float32)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0,1] (what images and the fields' colours hold) -> linear RGB."""
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear RGB in [0,1] -> sRGB-encoded values (inverse of srgb_to_linear)."""
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def mesh_to_trimesh(mesh: Mesh, vertices: np.ndarray | None = None, name: str = "material", gltf: bool = False):
    """A trimesh.Trimesh of `mesh` (vertex colours, or a textured material called `name`); vertices
    default to mesh.vertices. gltf: vertex colours stored linear, as glTF's COLOR_0 is (textures stay
    sRGB, as glTF's baseColorTexture is), so viewers show the field's colours."""
    vertices = mesh.vertices if vertices is None else vertices
    import trimesh
    from PIL import Image

    if mesh.texture is not None and mesh.uv is not None:
        material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(mesh.texture), name=name)
        visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
        return trimesh.Trimesh(vertices, mesh.faces, visual=visual, process=False)
    colors = None
    if mesh.colors is not None:
        rgb = (np.clip(srgb_to_linear(mesh.colors) if gltf else mesh.colors, 0, 1) * 255 + 0.5).astype(np.uint8)
        colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices, mesh.faces, vertex_colors=colors, process=False)


def write_mesh(mesh: Mesh, path: Path, fmt: str | None = None) -> list[Path]:
    """Write `mesh` to `path` as fmt (default: the suffix); returns the files written (OBJ: + .mtl, .png)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in MESH_FORMATS:
        raise ConfigError(f"{path}: mesh format must be one of {', '.join(MESH_FORMATS)}, got {fmt!r}")
    if fmt == "glb":
        tm = mesh_to_trimesh(mesh, mesh.vertices @ Z_UP_TO_GLTF.T, path.stem, gltf=True)
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
