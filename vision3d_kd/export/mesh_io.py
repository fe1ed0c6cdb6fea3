"""Writing meshes and point clouds (trimesh does the encoding): GLB (glTF binary), OBJ (+MTL + PNG when
textured), PLY (binary, vertex colours). Every file is written to a temporary name and renamed, so an
interrupted export never leaves a half-written file; an OBJ's MTL and PNG are renamed before the OBJ.

What viewers need to show a mesh as the run looks: smooth per-vertex normals (GLB NORMAL, OBJ `vn`, PLY
nx/ny/nz) and a matte white material (glTF: metallicFactor 0, roughnessFactor 1, baseColorFactor 1, so
the vertex colours or the texture show at full value — glTF's default material is metallic; MTL: `Kd 1`).

Up axis (`up`, see `data.axes`): the run's world is z-up; "+y" turns it to y-up, (x, y, z) -> (x, z, -y).
glTF is +Y up by specification (GLB is always "+y"); OBJ and PLY default to the run's "+z" (as nerfstudio
writes them).
GLB files hold linear vertex colours (COLOR_0 is linear; the fields' colours are sRGB-encoded like the
images they were fitted to); OBJ and PLY hold sRGB colours.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..data.axes import up_rotation
from ..errors import ConfigError
from .mesh import Mesh, vertex_normals

__all__ = ["MESH_FORMATS", "Z_UP_TO_GLTF", "default_up", "mesh_rotation", "mesh_to_trimesh", "write_mesh",
           "write_point_cloud", "srgb_to_linear", "linear_to_srgb", "read_mesh"]

MESH_FORMATS = ("glb", "obj", "ply")
Z_UP_TO_GLTF = up_rotation("+y").astype(np.float32)


def default_up(fmt: str) -> str:
    """The up axis a mesh format gets when none is asked for: "+y" for glb (the glTF specification), else "+z"."""
    return "+y" if fmt == "glb" else "+z"


def mesh_rotation(fmt: str, up: str | None = None) -> np.ndarray:
    """3x3 rotation (float32) from the run's z-up world to a `fmt` file whose `up` axis points up (default
    `default_up(fmt)`); ConfigError for an unknown axis, or for another axis than "+y" in a GLB."""
    up = up or default_up(fmt)
    if fmt == "glb" and up != "+y":
        raise ConfigError(f"--up {up}: glTF is +Y up by specification; GLB files are always written +Y up")
    return up_rotation(up).astype(np.float32)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0,1] (what images and the fields' colours hold) -> linear RGB."""
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear RGB in [0,1] -> sRGB-encoded values (inverse of srgb_to_linear)."""
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def _material(name: str, image, gltf: bool):
    """A matte white material: glTF PBR (metallic 0, roughness 1, base colour 1) or MTL (Kd 1, Ka 1, Ks 0)."""
    from trimesh.visual.material import PBRMaterial, SimpleMaterial

    if gltf:
        return PBRMaterial(name=name, baseColorTexture=image, baseColorFactor=[255, 255, 255, 255],
                           metallicFactor=0.0, roughnessFactor=1.0)
    return SimpleMaterial(name=name, image=image, diffuse=[255, 255, 255, 255], ambient=[255, 255, 255, 255],
                          specular=[0, 0, 0, 255], glossiness=1.0)


def mesh_to_trimesh(mesh: Mesh, rotation: np.ndarray | None = None, name: str = "material", gltf: bool = False):
    """A trimesh.Trimesh of `mesh` turned by `rotation` (3x3, default none) with smooth vertex normals and
    a matte white material called `name` (`_material`) carrying the texture or the vertex colours.
    gltf: vertex colours stored linear, as glTF's COLOR_0 is (textures stay sRGB, as glTF's
    baseColorTexture is), so viewers show the field's colours."""
    import trimesh
    from PIL import Image

    rot = np.eye(3, dtype=np.float32) if rotation is None else np.asarray(rotation, np.float32)
    vertices = mesh.vertices @ rot.T
    normals = vertex_normals(mesh.vertices, mesh.faces) @ rot.T
    textured = mesh.texture is not None and mesh.uv is not None
    colors = None
    if mesh.colors is not None and not textured:
        rgb = (np.clip(srgb_to_linear(mesh.colors) if gltf else mesh.colors, 0, 1) * 255 + 0.5).astype(np.uint8)
        colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
        if not gltf:  # OBJ and PLY writers take vertex colours from colour visuals (no material)
            return trimesh.Trimesh(vertices, mesh.faces, vertex_normals=normals, vertex_colors=colors, process=False)
    image = Image.fromarray(mesh.texture) if textured else None
    visual = trimesh.visual.TextureVisuals(uv=mesh.uv if textured else None, material=_material(name, image, gltf))
    if colors is not None:  # glTF: COLOR_0 beside the material
        visual.vertex_attributes["color"] = colors
    return trimesh.Trimesh(vertices, mesh.faces, vertex_normals=normals, visual=visual, process=False)


def read_mesh(path: Path, up: str | None = None) -> Mesh:
    """A mesh file read back with trimesh (the inverse of write_mesh for GLB/OBJ/PLY): vertices turned back
    to the run's z-up world from the file's `up` axis (default `default_up(fmt)`), faces, and vertex colours
    [V,3] in [0,1] as the file holds them (GLB: linear; COLOR_0 beside a material is kept), or a texture."""
    import trimesh

    fmt = Path(path).suffix.lstrip(".").lower()
    loaded = trimesh.load(path, process=False)
    if isinstance(loaded, trimesh.Scene):  # a GLB: one geometry (concatenating would drop COLOR_0)
        if len(loaded.geometry) != 1:
            raise ConfigError(f"{path}: expected one mesh, found {len(loaded.geometry)}")
        loaded = next(iter(loaded.geometry.values()))
    visual = loaded.visual
    rgba = visual.vertex_colors if visual.kind == "vertex" else getattr(visual, "vertex_attributes", {}).get("color")
    colors = None if rgba is None else (np.asarray(rgba)[:, :3] / 255.0).astype(np.float32)
    texture = uv = None
    image = getattr(getattr(visual, "material", None), "baseColorTexture", None) or \
        getattr(getattr(visual, "material", None), "image", None)
    if image is not None and getattr(visual, "uv", None) is not None:
        texture, uv = np.asarray(image.convert("RGB")), np.asarray(visual.uv, np.float32)
    verts = np.asarray(loaded.vertices, np.float32) @ mesh_rotation(fmt, up)  # inverse turn: R^T applied on the right
    return Mesh(verts, np.asarray(loaded.faces, np.int64), colors, uv, texture)


def write_mesh(mesh: Mesh, path: Path, fmt: str | None = None, up: str | None = None) -> list[Path]:
    """Write `mesh` (run world, z-up) to `path` as fmt (default: the suffix) with up axis `up` (default
    `default_up(fmt)`); returns the files written (OBJ: + .mtl, .png)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in MESH_FORMATS:
        raise ConfigError(f"{path}: mesh format must be one of {', '.join(MESH_FORMATS)}, got {fmt!r}")
    rot = mesh_rotation(fmt, up)
    tm = mesh_to_trimesh(mesh, rot, path.stem, gltf=fmt == "glb")
    if fmt in ("glb", "ply"):
        data = tm.export(file_type="glb", include_normals=True) if fmt == "glb" else \
            tm.export(file_type="ply", encoding="binary", vertex_normal=True)
        atomic_write(path, lambda f: f.write(data))
        return [path]
    from trimesh.exchange.obj import export_obj

    textured = mesh.texture is not None
    mtl = path.with_suffix(".mtl").name
    text, files = export_obj(tm, include_normals=True, include_color=not textured, include_texture=textured,
                             return_texture=True, mtl_name=mtl)
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


def write_point_cloud(points: np.ndarray, colors: np.ndarray, path: Path, up: str | None = None) -> Path:
    """Binary PLY point cloud: points [N,3] (world units, z-up; written with `up` as for a PLY mesh),
    colours [N,3] RGB in [0,1] (uchar red/green/blue)."""
    import trimesh

    points = np.asarray(points, dtype=np.float32) @ mesh_rotation("ply", up).T
    rgb = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
    cloud = trimesh.PointCloud(points, colors=rgb)
    buf = io.BytesIO()
    cloud.export(buf, file_type="ply", encoding="binary")
    data = buf.getvalue()
    atomic_write(Path(path), lambda f: f.write(data))
    return Path(path)
