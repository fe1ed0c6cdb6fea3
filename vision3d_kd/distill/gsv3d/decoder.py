"""GSV3D's Gaussian-splat decoder: multi-view latents [B,V,C,h,w] and their cameras -> pixel-aligned 3D
Gaussians, one per latent pixel of every view.

A ViT over all views' latent patches at once: each token is a p×p patch of one view's latent plus the
Plücker coordinates (d, o × d, world frame) of the ray through the patch centre, so geometry is read from the
cameras, not from a position table (any resolution and any number of views); blocks of self-attention over all
tokens, optional cross-attention to tokens of the input image, and an MLP. A linear head gives every latent
pixel's Gaussian: distance along the pixel's ray in [radius − reach, radius + reach], scales (world units)
between `scale_min` and `scale_max`, rotation (wxyz, normalised), opacity (logit) and colour (RGB in [0,1],
SH degree 0). Means = camera centre + distance × unit ray direction (world frame)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...cameras import Cameras, camera_rays
from ...checkpoint import load_tensors, save_tensors, write_json
from ...errors import RunError
from ...fields.splats import GaussianSplats, rgb_to_sh_dc
from .generator import ImageEncoder

__all__ = ["DecoderConfig", "GaussianDecoder", "DecodedSplats", "load_decoder", "default_decoder_path"]

PARAMS = 12  # distance, 3 log-scales, 4 quaternion, opacity logit, 3 colour


@dataclass
class DecoderConfig:
    """Decoder widths and output ranges (scene units; `radius` is the orbit cameras' distance)."""

    latent_channels: int = 4
    patch: int = 2
    dim: int = 128
    depth: int = 4
    heads: int = 4
    image_cross: bool = True
    image_size: int = 64
    radius: float = 3.5
    reach: float = 1.8
    scale_min: float = 0.004
    scale_max: float = 0.25


class DecodedSplats:
    """Differentiable Gaussians of one object, duck-typed for `render.splat.render_splats`: means [N,3],
    quats [N,4] (wxyz, unit), scales [N,3], opacities [N], sh [N,1,3] (degree 0)."""

    active_sh_degree = 0

    def __init__(self, means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor, rgb: Tensor) -> None:
        self.means, self.log_scales, self.quats, self.opacity_logits, self.rgb = (
            means, log_scales, quats, opacity_logits, rgb)

    @property
    def scales(self) -> Tensor:
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        return rgb_to_sh_dc(self.rgb)[:, None, :]

    def to_splats(self, min_opacity: float = 0.005, aabb: float = 2.0) -> GaussianSplats:
        """A `GaussianSplats` (degree 0) of the Gaussians at least `min_opacity` opaque, scene box ±aabb."""
        keep = self.opacities.detach() >= min_opacity
        out = GaussianSplats(n=int(keep.sum()), sh_degree=0, aabb=[[-aabb] * 3, [aabb] * 3])
        return out.set_params({"means": self.means[keep], "log_scales": self.log_scales[keep],
                               "quats": self.quats[keep], "opacity_logits": self.opacity_logits[keep],
                               "sh": self.sh[keep]})


class _Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention to image tokens, MLP."""

    def __init__(self, dim: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim), nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross = cross
        if cross:
            self.n2, self.xattn = nn.LayerNorm(dim), nn.MultiheadAttention(dim, heads, batch_first=True)
        self.n3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, image: Tensor | None) -> Tensor:
        h = self.n1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        if self.cross and image is not None:
            x = x + self.xattn(self.n2(x), image, image, need_weights=False)[0]
        return x + self.mlp(self.n3(x))


def _plucker(cams: Cameras, grid: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rays through the centres of a grid×grid split of every camera's image: origins [M,3], unit directions
    [M,3] (world) and Plücker coordinates [M,6] (d, o × d), M = len(cams)·grid², row-major per camera."""
    step = cams.width / grid
    j = (torch.arange(grid, dtype=torch.float32) + 0.5) * step
    py, px = torch.meshgrid(j, j, indexing="ij")
    n = len(cams)
    idx = torch.arange(n).repeat_interleave(grid * grid)
    o, d = camera_rays(cams, idx, px.reshape(-1).repeat(n), py.reshape(-1).repeat(n))
    return o, d, torch.cat([d, torch.cross(o, d, dim=-1)], dim=-1)


class GaussianDecoder(nn.Module):
    """`forward(latents [B,V,C,h,w], cams: Cameras [B·V] (image size S), images [B,3,S,S] | None)` ->
    one `DecodedSplats` per batch item with V·h·w Gaussians."""

    def __init__(self, config: DecoderConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DecoderConfig()
        self.embed = nn.Linear(c.latent_channels * c.patch ** 2, c.dim)
        self.ray_embed = nn.Linear(6, c.dim)
        self.input_view = nn.Parameter(torch.zeros(c.dim))
        self.image = ImageEncoder(c.dim, c.image_size) if c.image_cross else None
        self.blocks = nn.ModuleList(_Block(c.dim, c.heads, c.image_cross) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.patch ** 2 * PARAMS)
        with torch.no_grad():  # start as small, half-transparent Gaussians at the orbit's centre distance
            self.head.weight.mul_(0.1)
            bias = self.head.bias.view(c.patch ** 2, PARAMS)
            bias.zero_()
            bias[:, 1:4] = -1.0
            bias[:, 4] = 1.0
            bias[:, 8] = -1.0

    def forward(self, latents: Tensor, cams: Cameras, images: Tensor | None = None) -> list[DecodedSplats]:
        c = self.config
        b, v, ch, h, w = latents.shape
        p, g = c.patch, h // c.patch
        if h != w or h % p or len(cams) != b * v:
            raise ValueError(f"latents must be square with sides divisible by {p} and one camera per view; got "
                             f"{tuple(latents.shape)} and {len(cams)} cameras")
        patches = latents.reshape(b, v, ch, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, v * g * g, -1)
        plucker = _plucker(cams, g)[2].to(latents).reshape(b, v * g * g, 6)
        x = self.embed(patches) + self.ray_embed(plucker)
        first = torch.zeros(v * g * g, 1, device=x.device, dtype=x.dtype)
        first[: g * g] = 1.0
        x = x + first * self.input_view
        image = self.image(images) if self.image is not None and images is not None else None
        for blk in self.blocks:
            x = blk(x, image)
        out = self.head(self.norm(x)).reshape(b, v, g, g, p, p, PARAMS)
        out = out.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, v * h * w, PARAMS)
        origins, dirs, _ = _plucker(cams, h)
        origins, dirs = origins.to(out).reshape(b, -1, 3), dirs.to(out).reshape(b, -1, 3)
        dist = c.radius + c.reach * torch.tanh(out[..., 0:1])
        lo, hi = math.log(c.scale_min), math.log(c.scale_max)
        log_scales = lo + (hi - lo) * torch.sigmoid(out[..., 1:4])
        quats = F.normalize(out[..., 4:8], dim=-1)
        rgb = torch.sigmoid(out[..., 9:12])
        means = origins + dist * dirs
        return [DecodedSplats(means[i], log_scales[i], quats[i], out[i, :, 8], rgb[i]) for i in range(b)]

    def deepened(self, depth: int) -> GaussianDecoder:
        """A decoder of `depth` blocks (at least this one's) that computes exactly what this one does: these
        weights, and each added block (appended after the others) an identity at first, its attention and MLP
        output projections zero, so that training goes on from this decoder's output with more capacity."""
        if depth < self.config.depth:
            raise ValueError(f"a decoder can only be deepened: {depth} < {self.config.depth} blocks")
        out = GaussianDecoder(dataclasses.replace(self.config, depth=depth))
        unexpected = out.load_state_dict(self.state_dict(), strict=False).unexpected_keys
        assert not unexpected, unexpected  # every weight of this decoder has its place in the deeper one
        with torch.no_grad():
            for blk in out.blocks[self.config.depth:]:
                outs = [blk.attn.out_proj, blk.mlp[2]] + ([blk.xattn.out_proj] if blk.cross else [])
                for layer in outs:
                    layer.weight.zero_()
                    layer.bias.zero_()
        return out.train(self.training)

    def save(self, out: Path, info: dict | None = None) -> None:
        """Write the decoder directory: decoder.safetensors and decoder.json (config + info)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "decoder.safetensors", {k: t.detach().contiguous() for k, t in self.state_dict().items()})
        write_json(out / "decoder.json", {"config": dataclasses.asdict(self.config), **(info or {})})


def default_decoder_path() -> Path:
    """The bundled decoder's directory (package data)."""
    return Path(__file__).resolve().parents[2] / "assets" / "gs_decoder"


def load_decoder(path: str | Path | None = None) -> GaussianDecoder:
    """The decoder saved at `path` (default: the bundled one), eval mode."""
    path = Path(path) if path else default_decoder_path()
    if not (path / "decoder.json").is_file():
        raise RunError(f"{path}: not a Gaussian decoder directory (no decoder.json)")
    cfg = DecoderConfig(**json.loads((path / "decoder.json").read_text())["config"])
    dec = GaussianDecoder(cfg)
    dec.load_state_dict(load_tensors(path / "decoder.safetensors"))
    return dec.eval()
