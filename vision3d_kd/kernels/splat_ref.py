"""Pure-PyTorch Gaussian splat rasterizer: tile binning and front-to-back alpha compositing.

This is the reference the fused CPU kernel (`kernels/splat.py`) is tested against, and the fallback
when no extension can be built. Differentiable by autograd w.r.t. means2d, conics, colours,
opacities and depths. Memory stays bounded: tiles are processed in chunks of at most
`budget` (pixel, Gaussian) pairs, each under activation checkpointing when gradients are needed.

Compositing follows 3D Gaussian Splatting: per pixel, Gaussians in increasing depth,
alpha = min(0.99, opacity * exp(-0.5 d^T conic d)), skipped when alpha < 1/255; a Gaussian that
would bring the transmittance below 1e-4 ends the pixel (it and all behind it are dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["Projection", "TILE", "tile_bins", "rasterize_ref", "finish_image", "ALPHA_MIN", "ALPHA_MAX", "T_MIN"]

TILE = 16  # tile edge in pixels for tile binning (both rasterizers)


@dataclass
class Projection:
    """Per-Gaussian screen-space quantities for N input Gaussians (culled ones have radius 0).

    means2d [N,2] pixels; conics [N,3] = (a, b, c) of the inverse 2D covariance, so the Gaussian's
    exponent at pixel offset (dx, dy) is -0.5 (a dx^2 + c dy^2) - b dx dy; depths [N] camera z
    (world units); radii [N] int32 pixels (3 sigma); visible [N] bool.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    visible: Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4


@torch.no_grad()
def tile_bins(proj: Projection, width: int, height: int, tile: int = TILE) -> tuple[Tensor, Tensor]:
    """Tile lists: (offsets [n_tiles + 1] int64, ids [P] int64). Tile t (row-major over
    ceil(H/tile) x ceil(W/tile) tiles) holds Gaussians ids[offsets[t]:offsets[t+1]] in increasing depth
    (ties by index) -- every visible Gaussian whose 3-sigma square overlaps the tile."""
    ntx, nty = -(-width // tile), -(-height // tile)
    vis = proj.visible & (proj.radii > 0)
    idx = torch.nonzero(vis).flatten()
    if idx.numel() == 0:
        return torch.zeros(ntx * nty + 1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    idx = idx[torch.sort(proj.depths.detach()[idx], stable=True).indices]
    m = proj.means2d.detach()[idx].cpu()
    r = proj.radii[idx].cpu().to(m.dtype)
    x0 = torch.floor((m[:, 0] - r) / tile).clamp(0, ntx).long()
    x1 = torch.ceil((m[:, 0] + r) / tile).clamp(0, ntx).long()
    y0 = torch.floor((m[:, 1] - r) / tile).clamp(0, nty).long()
    y1 = torch.ceil((m[:, 1] + r) / tile).clamp(0, nty).long()
    w = x1 - x0
    cnt = w * (y1 - y0)
    keep = cnt > 0
    idx, x0, y0, w, cnt = idx.cpu()[keep], x0[keep], y0[keep], w[keep], cnt[keep]
    owner = torch.repeat_interleave(torch.arange(idx.numel()), cnt)
    first = torch.cumsum(cnt, 0) - cnt
    k = torch.arange(owner.numel()) - first[owner]
    tiles = (y0[owner] + k // w[owner]) * ntx + x0[owner] + k % w[owner]
    order = torch.sort(tiles, stable=True).indices  # stable: depth order survives inside each tile
    ids = idx[owner[order]]
    counts = torch.bincount(tiles, minlength=ntx * nty)
    offsets = torch.zeros(ntx * nty + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(counts, 0)
    return offsets, ids


def _shade(pix: Tensor, m2d: Tensor, con: Tensor, col: Tensor, opa: Tensor, z: Tensor) -> tuple[Tensor, ...]:
    """pix [C,P,2]; per-tile padded Gaussians m2d [C,G,2], con [C,G,3], col [C,G,3], opa [C,G], z [C,G]
    -> rgb [C,P,3], alpha [C,P], accumulated depth [C,P]."""
    d = pix[:, :, None, :] - m2d[:, None, :, :]
    dx, dy = d[..., 0], d[..., 1]
    a, b, c = (con[:, None, :, i] for i in range(3))
    power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
    alpha = torch.clamp_max(opa[:, None, :] * torch.exp(power), ALPHA_MAX)
    alpha = torch.where((power <= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    with torch.no_grad():
        include = torch.cumprod(1.0 - alpha, dim=-1) >= T_MIN
    alpha = alpha * include
    trans = torch.cumprod(1.0 - alpha, dim=-1)
    trans = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    w = alpha * trans
    rgb = torch.einsum("cpg,cgk->cpk", w, col)
    return rgb, w.sum(-1), torch.einsum("cpg,cg->cp", w, z)


def rasterize_ref(
    proj: Projection,
    colors: Tensor,
    opacities: Tensor,
    width: int,
    height: int,
    background: Tensor | None = None,
    budget: int = 1 << 22,
) -> dict[str, Tensor]:
    """Composite projected Gaussians into an image.

    colors [N,3] (>= 0), opacities [N] in (0,1), background [3] or None (black).
    Returns rgb [H,W,3] (over the background), alpha [H,W], depth [H,W] (expected camera z of the
    visible Gaussians, world units: accumulated w*z / alpha; 0 where alpha is 0)."""
    offsets, ids = tile_bins(proj, width, height)
    dev, dt = colors.device, colors.dtype
    ntx, nty = -(-width // TILE), -(-height // TILE)
    counts = (offsets[1:] - offsets[:-1]).tolist()
    n = colors.shape[0]
    # Gaussian n is a transparent dummy that pads each tile's list to the chunk's longest.
    m2d = torch.cat([proj.means2d, proj.means2d.new_zeros(1, 2)])
    con = torch.cat([proj.conics, proj.conics.new_zeros(1, 3)])
    col = torch.cat([colors, colors.new_zeros(1, 3)])
    opa = torch.cat([opacities, opacities.new_zeros(1)])
    z = torch.cat([proj.depths, proj.depths.new_zeros(1)])
    ij = torch.stack(torch.meshgrid(torch.arange(TILE), torch.arange(TILE), indexing="ij"), -1).reshape(-1, 2)
    local = torch.stack([ij[:, 1], ij[:, 0]], -1).to(dev, dt) + 0.5  # (x, y) pixel centres in a tile
    rgb_t, alpha_t, depth_t = [], [], []
    t = 0
    n_tiles = ntx * nty
    while t < n_tiles:
        g_max, e = max(counts[t], 1), t + 1
        while e < n_tiles and (e + 1 - t) * TILE * TILE * max(g_max, counts[e]) <= budget:
            g_max, e = max(g_max, counts[e]), e + 1
        pad = torch.full((e - t, g_max), n, dtype=torch.long)
        for j in range(t, e):
            pad[j - t, : counts[j]] = ids[offsets[j] : offsets[j + 1]]
        pad = pad.to(dev)
        tiles = torch.arange(t, e)
        origin = torch.stack([tiles % ntx, tiles // ntx], -1).to(dev, dt) * TILE
        pix = origin[:, None, :] + local[None]
        args = (pix, m2d[pad], con[pad], col[pad], opa[pad], z[pad])
        if torch.is_grad_enabled() and any(a.requires_grad for a in args):
            out = checkpoint(_shade, *args, use_reentrant=False)
        else:
            out = _shade(*args)
        rgb_t.append(out[0])
        alpha_t.append(out[1])
        depth_t.append(out[2])
        t = e

    def assemble(parts: list[Tensor], ch: int) -> Tensor:
        x = torch.cat(parts).reshape(nty, ntx, TILE, TILE, ch).permute(0, 2, 1, 3, 4)
        return x.reshape(nty * TILE, ntx * TILE, ch)[:height, :width]

    rgb = assemble(rgb_t, 3)
    alpha = assemble(alpha_t, 1)[..., 0]
    if background is not None:
        rgb = rgb + (1.0 - alpha)[..., None] * background.to(dev, dt)
    return finish_image(rgb, alpha, assemble(depth_t, 1)[..., 0])


def finish_image(rgb: Tensor, alpha: Tensor, acc_z: Tensor) -> dict[str, Tensor]:
    """Rasterizer outputs {rgb, opacity, depth} from composited rgb [H,W,3], accumulated opacity `alpha` [H,W]
    and accumulated w*z [H,W]: depth = acc_z / alpha (expected camera z of what is visible), 0 where alpha is 0."""
    depth = torch.where(alpha > 0, acc_z / alpha.clamp_min(1e-10), torch.zeros_like(acc_z))
    return {"rgb": rgb, "opacity": alpha, "depth": depth}

