"""UV-textured meshes: xatlas unwraps the mesh, every texel covered by a triangle in UV space is mapped
back to its 3D point (barycentric) and coloured by a colour function (e.g. the field as seen along
the −normal), then the
colours are bled a few texels past the chart borders so that filtering does not pull in the black
background at seams.

Texture rows run top to bottom: row r holds v = 1 − (r + 0.5) / size (OBJ's v-up convention; the glTF
writer flips it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .mesh import Mesh, vertex_normals
from .raster import rasterize_triangles

__all__ = ["ColorFn", "unwrap", "rasterize_uv", "bake_texture"]

ColorFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def unwrap(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas parametrisation: (vertex map [V'] into mesh.vertices, faces [F,3] into V', uv [V',2] in [0,1])."""
    import xatlas

    vmap, faces, uv = xatlas.parametrize(mesh.vertices.astype(np.float32), mesh.faces.astype(np.uint32))
    return vmap.astype(np.int64), faces.astype(np.int64), uv.astype(np.float32)


def rasterize_uv(uv: Tensor, faces: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Texels of a size x size texture covered by UV triangles (uv [V,2], faces [F,3]): their flat index
    row * size + col [T], triangle [T] and barycentric weights [T,3] of the texel centre."""
    xy = torch.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], dim=-1)
    return rasterize_triangles(xy, faces, size, size)


def _bleed(img: Tensor, filled: Tensor, iterations: int) -> Tensor:
    """Fill empty texels [H,W] next to filled ones with the mean of their filled 3x3 neighbours, repeatedly."""
    img, filled = img.clone(), filled.clone()
    kernel = torch.ones(1, 1, 3, 3)
    for _ in range(iterations):
        w = F.conv2d(filled.float()[None, None], kernel, padding=1)[0, 0]
        s = F.conv2d((img * filled[..., None]).permute(2, 0, 1)[:, None], kernel, padding=1)[:, 0].permute(1, 2, 0)
        grow = ~filled & (w > 0)
        if not grow.any():
            break
        img[grow] = s[grow] / w[grow][:, None]
        filled = filled | grow
    return img


def bake_texture(mesh: Mesh, color_fn: ColorFn, size: int = 1024, bleed: int = 8) -> Mesh:
    """A UV-textured copy of `mesh` (vertices split along chart seams): an RGB texture of size x size
    texels, each coloured by color_fn(points [T,3], unit normals [T,3]) -> RGB [T,3] in [0,1] at its
    surface point (see the module docstring)."""
    if size < 8:
        raise ConfigError(f"--texture-size must be >= 8, got {size}")
    vmap, faces, uv = unwrap(mesh)
    verts = mesh.vertices[vmap]
    normals = vertex_normals(mesh.vertices, mesh.faces)[vmap]
    texel, tri, bary = rasterize_uv(torch.from_numpy(uv), torch.from_numpy(faces), size)
    corners = torch.from_numpy(faces)[tri]  # [T,3]
    pts = (torch.from_numpy(verts)[corners] * bary[..., None]).sum(1)
    nrm = F.normalize((torch.from_numpy(normals)[corners] * bary[..., None]).sum(1), dim=-1)
    rgb = np.asarray(color_fn(pts.numpy(), nrm.numpy()), dtype=np.float32)
    img = torch.zeros(size * size, 3)
    img[texel] = torch.from_numpy(rgb)
    filled = torch.zeros(size * size, dtype=torch.bool)
    filled[texel] = True
    img = _bleed(img.reshape(size, size, 3), filled.reshape(size, size), bleed)
    texture = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    info = {**mesh.info, "texture_size": size, "texels": int(filled.sum())}
    return Mesh(verts, faces, uv=uv, texture=texture, info=info)
