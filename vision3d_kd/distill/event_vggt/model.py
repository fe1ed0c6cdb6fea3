"""A small VGGT-shaped geometry network: patch tokens per frame, alternating frame-wise and global
(all frames of the clip) self-attention, and a DPT-style head that fuses tokens of four layers into a
per-pixel depth map and confidence. The bundled teacher (RGB in) and the event student (voxel grids in)
are both instances.

Shapes: input [B, S, C, H, W] (S frames of a clip; H, W multiples of ``patch``); tokens [B, S, P, D]
with P = (H/patch)(W/patch); depth [B, S, H, W] metric z-depth in metres; confidence >= 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError

__all__ = ["NetConfig", "GeometryNet"]


@dataclass
class NetConfig:
    """in_channels: 3 for RGB, the voxel-grid bins for events; dim/heads: token width and attention
    heads; depth: number of (frame, global) attention pairs; patch: pixels per token side; features:
    channels of the DPT head."""

    in_channels: int = 3
    dim: int = 96
    heads: int = 4
    depth: int = 4
    patch: int = 16
    features: int = 48

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        n, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, length, d)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


def _sincos_2d(h: int, w: int, dim: int) -> Tensor:
    """Fixed 2D sine-cosine position embedding [h*w, dim] (half the channels for rows, half for columns)."""
    q = dim // 4
    freq = 1.0 / (100.0 ** (torch.arange(q) / q))
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    parts = []
    for coord in (yy.reshape(-1), xx.reshape(-1)):
        ang = coord[:, None] * freq[None]
        parts += [ang.sin(), ang.cos()]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


class _ResidualConv(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.c2(F.relu(self.c1(F.relu(x))))


class _DPTHead(nn.Module):
    """Four token maps resampled to 4x, 2x, 1x and 1/2x the token grid, fused coarse to fine with
    residual conv units, read out as (log depth, confidence logit) and upsampled to the image."""

    def __init__(self, dim: int, feat: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.projs = nn.ModuleList(nn.Linear(dim, feat) for _ in range(4))
        self.resample = nn.ModuleList([nn.ConvTranspose2d(feat, feat, 4, stride=4),
                                       nn.ConvTranspose2d(feat, feat, 2, stride=2), nn.Identity(),
                                       nn.Conv2d(feat, feat, 3, stride=2, padding=1)])
        self.lateral = nn.ModuleList(_ResidualConv(feat) for _ in range(4))
        self.fuse = nn.ModuleList(_ResidualConv(feat) for _ in range(4))
        self.out = nn.Sequential(nn.Conv2d(feat, feat // 2, 3, padding=1), nn.ReLU(), nn.Conv2d(feat // 2, 2, 1))

    def forward(self, taps: list[Tensor], grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
        h, w = grid
        maps = []
        for k, t in enumerate(taps):
            n = t.shape[0]
            m = self.projs[k](self.norms[k](t)).transpose(1, 2).reshape(n, -1, h, w)
            maps.append(self.lateral[k](self.resample[k](m)))
        y = self.fuse[3](maps[3])
        for k in (2, 1, 0):
            y = F.interpolate(y, size=maps[k].shape[-2:], mode="bilinear", align_corners=False)
            y = self.fuse[k](y + maps[k])
        return F.interpolate(self.out(y), size=size, mode="bilinear", align_corners=False)


class GeometryNet(nn.Module):
    """Clip-level depth network; see the module docstring for shapes."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads or cfg.dim % 4 or cfg.depth < 1 or cfg.patch < 2 or cfg.features % 2:
            raise ConfigError(f"bad network configuration {cfg}")
        self.cfg = cfg
        self.embed_conv = nn.Conv2d(cfg.in_channels, cfg.dim, cfg.patch, stride=cfg.patch)
        self.frame_embed = nn.Parameter(torch.zeros(2, cfg.dim))  # reference frame / other frames
        self.frame_blocks = nn.ModuleList(_Block(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(_Block(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.head = _DPTHead(cfg.dim, cfg.features)
        self.taps = [max(0, math.ceil((k + 1) * cfg.depth / 4) - 1) for k in range(4)]

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Patch tokens [B,S,P,D] with position and frame embeddings, and the token grid (h, w)."""
        b, s, c, hh, ww = x.shape
        p = self.cfg.patch
        if hh % p or ww % p or c != self.cfg.in_channels:
            raise ConfigError(f"input [.., {c}, {hh}, {ww}] needs {self.cfg.in_channels} channels and a size "
                              f"divisible by {p}")
        t = self.embed_conv(x.reshape(b * s, c, hh, ww))
        h, w = t.shape[-2:]
        t = t.flatten(2).transpose(1, 2).reshape(b, s, h * w, -1)
        which = torch.ones(s, dtype=torch.long, device=x.device)
        which[0] = 0
        t = t + _sincos_2d(h, w, self.cfg.dim).to(t)[None, None] + self.frame_embed[which][None, :, None]
        return t, (h, w)

    def run(self, tokens: Tensor, start: int = 0) -> list[Tensor]:
        """Apply attention pairs start..depth-1 to tokens [B,S,P,D]; the output of each pair."""
        b, s, p, d = tokens.shape
        outs = []
        for k in range(start, self.cfg.depth):
            tokens = self.frame_blocks[k](tokens.reshape(b * s, p, d)).reshape(b, s, p, d)
            tokens = self.global_blocks[k](tokens.reshape(b, s * p, d)).reshape(b, s, p, d)
            outs.append(tokens)
        return outs

    def decode(self, layers: list[Tensor], grid: tuple[int, int], size: tuple[int, int]) -> dict[str, Tensor]:
        """Depth [B,S,H,W] (metres), log_depth and confidence from the outputs of all attention pairs."""
        b, s, p, d = layers[0].shape
        raw = self.head([layers[k].reshape(b * s, p, d) for k in self.taps], grid, size)
        log_depth = (raw[:, 0] + math.log(10.0)).clamp(-3.0, 8.0).reshape(b, s, *size)
        conf = (1.0 + torch.exp(raw[:, 1].clamp(max=10.0))).reshape(b, s, *size)
        return {"log_depth": log_depth, "depth": log_depth.exp(), "confidence": conf}

    def forward(self, x: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """x [B,S,C,H,W] -> tokens (list of [B,S,P,D], one per attention pair), depth, log_depth, confidence."""
        tokens, grid = self.embed(x)
        layers = self.run(tokens)
        out: dict[str, Tensor | list[Tensor]] = dict(self.decode(layers, grid, tuple(x.shape[-2:])))
        out["tokens"] = layers
        out["grid"] = grid
        return out
