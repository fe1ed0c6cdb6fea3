"""Triangle rasterisation on the CPU (pure torch): which pixel centres each 2D triangle covers, with
barycentric weights. Used to bake UV textures and to render mesh previews with a z-buffer."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras
from .mesh import Mesh, vertex_normals

__all__ = ["rasterize_triangles", "render_mesh"]


def rasterize_triangles(xy: Tensor, faces: Tensor, width: int, height: int, chunk: int = 1 << 22
              ) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel centres (x + 0.5, y + 0.5) covered by triangles with 2D vertices xy [V,2] (pixel units,
    x right, y down) and faces [F,3]: flat pixel index y * width + x [T], triangle [T], barycentric
    weights [T,3]. Candidates are the pixels of each triangle's bounding box, `chunk` at a time."""
    px = xy.double()
    tri = px[faces]  # [F,3,2]
    lo = torch.floor(tri.amin(1) - 0.5).long()
    hi = torch.ceil(tri.amax(1) - 0.5).long()
    lo[:, 0].clamp_(0, width - 1), lo[:, 1].clamp_(0, height - 1)
    hi[:, 0].clamp_(-1, width - 1), hi[:, 1].clamp_(-1, height - 1)
    w, h = (hi[:, 0] - lo[:, 0] + 1).clamp_min(0), (hi[:, 1] - lo[:, 1] + 1).clamp_min(0)
    counts = w * h
    ends = torch.cumsum(counts, 0)
    pixels, tris, bary = [], [], []
    start = 0
    while start < len(faces):
        base = int(ends[start] - counts[start])
        stop = max(int(torch.searchsorted(ends, base + chunk, right=True)), start + 1)
        f_idx = torch.repeat_interleave(torch.arange(start, stop), counts[start:stop])
        first = torch.cumsum(counts[start:stop], 0) - counts[start:stop]
        local = torch.arange(len(f_idx)) - first[f_idx - start]
        cx = lo[f_idx, 0] + local % w[f_idx]
        cy = lo[f_idx, 1] + local // w[f_idx]
        p = torch.stack([cx + 0.5, cy + 0.5], dim=-1).double()
        a, b, c = tri[f_idx, 0], tri[f_idx, 1], tri[f_idx, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        ok = area.abs() > 1e-12
        safe = torch.where(ok, area, torch.ones_like(area))
        l1 = ((c[:, 0] - b[:, 0]) * (p[:, 1] - b[:, 1]) - (c[:, 1] - b[:, 1]) * (p[:, 0] - b[:, 0])) / safe
        l2 = ((a[:, 0] - c[:, 0]) * (p[:, 1] - c[:, 1]) - (a[:, 1] - c[:, 1]) * (p[:, 0] - c[:, 0])) / safe
        lam = torch.stack([l1, l2, 1.0 - l1 - l2], dim=-1)
        inside = ok & (lam >= -1e-9).all(-1)
        pixels.append((cy * width + cx)[inside])
        tris.append(f_idx[inside])
        bary.append(lam[inside].float())
        start = stop
    return torch.cat(pixels), torch.cat(tris), torch.cat(bary)


def render_mesh(mesh: Mesh, cams: Cameras, i: int, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                light: tuple[float, float, float] = (0.4, 0.3, 0.85)) -> np.ndarray:
    """Preview image [H,W,3] uint8 of a coloured or textured mesh seen by camera i (z-buffered, colour
    times a soft headlight-plus-key-light shading so the shape reads)."""
    from .tsdf import project

    cams = cams.to("cpu")
    v = torch.from_numpy(mesh.vertices).float()
    f = torch.from_numpy(mesh.faces).long()
    x, y, z = project(cams, i, v)
    front = (z[f] > 1e-3).all(-1)
    pix, tri, bary = rasterize_triangles(torch.stack([x, y], -1), f[front], cams.width, cams.height)
    tri = front.nonzero().flatten()[tri]
    depth = (z[f[tri]] * bary).sum(-1)
    zbuf = torch.full((cams.height * cams.width,), float("inf")).scatter_reduce_(0, pix, depth, "amin")
    win = depth <= zbuf[pix]  # the nearest fragment per pixel
    pix, tri, bary = pix[win], tri[win], bary[win]
    if mesh.texture is not None and mesh.uv is not None:
        uv = (torch.from_numpy(mesh.uv)[f[tri]] * bary[..., None]).sum(1)
        tex = torch.from_numpy(mesh.texture).float() / 255.0
        size_y, size_x = tex.shape[:2]
        row = ((1 - uv[:, 1]) * size_y).long().clamp(0, size_y - 1)
        col = tex[row, (uv[:, 0] * size_x).long().clamp(0, size_x - 1)]
    elif mesh.colors is not None:
        col = (torch.from_numpy(mesh.colors)[f[tri]] * bary[..., None]).sum(1)
    else:
        col = torch.full((len(tri), 3), 0.8)
    n = torch.from_numpy(vertex_normals(mesh.vertices, mesh.faces))[f[tri]]
    n = torch.nn.functional.normalize((n * bary[..., None]).sum(1), dim=-1)
    key = torch.nn.functional.normalize(torch.tensor(light), dim=0)
    view = torch.nn.functional.normalize(cams.c2w[i, :3, 3] - (v[f[tri]] * bary[..., None]).sum(1), dim=-1)
    shade = 0.55 + 0.25 * (n * view).sum(-1).clamp_min(0) + 0.2 * (n @ key).clamp_min(0)
    img = torch.tensor(background, dtype=torch.float32).repeat(cams.height * cams.width, 1)
    img[pix] = (col * shade[:, None]).clamp(0, 1)
    return (img.reshape(cams.height, cams.width, 3).numpy() * 255 + 0.5).astype(np.uint8)
