"""The real SV3D (Stability AI; SV3D_p with cameras, SV3D_u without) as this package's multi-view generator
backend: its `VideoUNet` built from a local checkout of Stability-AI/generative-models (weights optional,
`model.diffusion_model.*` of sv3d_p/u.safetensors), wrapped in the denoiser, conditioning and sampler that
SV3D's sampling script uses, implemented here:

- latents [B,T,4,72,72] (T = 21 orbit frames, 576-px images, SD-scaled VAE latents); frame T−1 is the input
  view at azimuth 0, azimuth rising with the frame index (`default_orbit`).
- EDM v-parameterisation: D(x; σ) = c_skip x + c_out F(c_in x, c_noise) with c_skip = 1/(σ²+1),
  c_out = −σ/√(σ²+1), c_in = 1/√(σ²+1), c_noise = ¼ ln σ.
- conditioning: the input image's CLIP ViT-H/14 embedding [B,1024] (one cross-attention token per frame),
  its unscaled VAE latent mode [B,4,72,72] (concatenated to every frame's noisy latent), and a vector per
  frame — the sinusoidal (cos first) 256-wide embedding of cond_aug (1e-5) then, for SV3D_p, the 512-wide ones
  of the polar angle (90° − elevation) and the azimuth, in radians.
- guidance on x₀: the unconditional branch zeroes the CLIP token and the latent and keeps the vector;
  per-frame scale 1 + (s − 1)·tri(frame), lowest at the input view and highest opposite it.
- sampling: Karras σ from 700 to 0.002 (ρ = 7), deterministic Euler steps.

Encoding the image (SV3D's OpenCLIP and VAE encoder) is left to the caller: `clip` and `cond` are inputs."""

from __future__ import annotations

import importlib
import math
import sys
import types
from pathlib import Path

import torch
from torch import Tensor

from ...checkpoint import load_tensors
from ...errors import RunError

__all__ = ["SV3DDenoiser", "SV3DGenerator", "unet_config", "default_orbit", "sinusoid", "triangle_scales",
           "karras_sigmas", "import_video_unet"]

FRAMES = 21


def unet_config(variant: str = "p") -> dict:
    """The VideoUNet arguments of SV3D's configs (scripts/sampling/configs/sv3d_{p,u}.yaml), with plain
    softmax attention (the configs ask for xformers; parameter names are the same) and no checkpointing."""
    if variant not in ("p", "u"):
        raise ValueError(f"SV3D variant must be 'p' or 'u', got {variant!r}")
    return {"adm_in_channels": 1280 if variant == "p" else 256, "num_classes": "sequential", "use_checkpoint": False,
            "in_channels": 8, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
            "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_head_channels": 64,
            "use_linear_in_transformer": True, "transformer_depth": 1, "context_dim": 1024,
            "spatial_transformer_attn_type": "softmax", "extra_ff_mix_layer": True, "use_spatial_context": True,
            "merge_strategy": "learned_with_images", "video_kernel_size": [3, 1, 1]}


def import_video_unet(src: Path) -> type:
    """`VideoUNet` from a checkout of generative-models without running `sgm`'s package imports (which pull in
    pytorch_lightning, open_clip and kornia): the packages are registered bare, their modules load normally."""
    src = Path(src)
    if not (src / "sgm" / "modules" / "diffusionmodules" / "video_model.py").is_file():
        raise RunError(f"{src}: not a generative-models checkout (no sgm/modules/diffusionmodules/video_model.py)")
    for name, folder in (("sgm", src / "sgm"), ("sgm.modules", src / "sgm" / "modules")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    try:
        return importlib.import_module("sgm.modules.diffusionmodules.video_model").VideoUNet
    except ImportError as exc:
        raise RunError(f"{src}: SV3D's VideoUNet does not import ({exc})") from None


def sinusoid(values: Tensor, dim: int) -> Tensor:
    """[N, dim] embedding of scalars [N]: cos then sin of value · 10000^(−i/(dim/2)), i < dim/2."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half).to(values.device)
    args = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def default_orbit(elevation_deg: float = 10.0, frames: int = FRAMES) -> tuple[Tensor, Tensor]:
    """(elevation, azimuth) in degrees [frames] of SV3D's default orbit: constant elevation, azimuth
    360/frames · (i + 1) for frame i < frames − 1, and 0 for the last frame (the input view)."""
    azimuth = (torch.arange(1, frames + 1, dtype=torch.float32) * 360.0 / frames) % 360.0
    return torch.full((frames,), float(elevation_deg)), azimuth


def triangle_scales(frames: int, max_scale: float = 2.5, min_scale: float = 1.0) -> Tensor:
    """Per-frame guidance [frames]: min at the first and last frame, max half-way, linear in between."""
    v = torch.linspace(0.0, 1.0, frames)
    tri = 2.0 * (v - torch.floor(v + 0.5)).abs()
    return tri * (max_scale - min_scale) + min_scale


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0) -> Tensor:
    """[steps + 1] noise levels from sigma_max down to sigma_min, then 0 (Karras et al.'s schedule)."""
    ramp = torch.linspace(0.0, 1.0, steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1)])


class SV3DDenoiser:
    """SV3D's denoiser D(x; σ, image, cameras) -> x₀ around a real `VideoUNet` (see the module docstring)."""

    def __init__(self, unet: torch.nn.Module, variant: str = "p") -> None:
        unet_config(variant)
        self.unet, self.variant = unet.eval().requires_grad_(False), variant

    @classmethod
    def from_checkout(cls, src: Path, weights: Path | None = None, variant: str = "p",
                      device: str = "cpu", dtype: torch.dtype = torch.float32) -> SV3DDenoiser:
        """Build SV3D's VideoUNet from the checkout at `src`; load `weights` (sv3d_p/u.safetensors: its
        `model.diffusion_model.*` tensors) when given, else keep the random initialisation."""
        unet = import_video_unet(src)(**unet_config(variant))
        if weights is not None:
            prefix = "model.diffusion_model."
            state = {k[len(prefix):]: v for k, v in load_tensors(Path(weights)).items() if k.startswith(prefix)}
            if not state:
                raise RunError(f"{weights}: no model.diffusion_model.* tensors (not an SV3D checkpoint)")
            try:
                unet.load_state_dict(state)
            except RuntimeError as exc:
                raise RunError(f"{weights}: does not fit SV3D_{variant} ({str(exc).splitlines()[0]})") from None
        return cls(unet.to(device, dtype), variant)

    def camera_vector(self, elevation_deg: Tensor, azimuth_deg: Tensor, cond_aug: float = 1e-5) -> Tensor:
        """The UNet's vector input [B·T, 256 (+1024 for SV3D_p)] for cameras [B,T] in degrees."""
        n = elevation_deg.numel()
        parts = [sinusoid(torch.full((n,), float(cond_aug)), 256)]
        if self.variant == "p":
            polar = torch.deg2rad(90.0 - elevation_deg.reshape(-1).float())
            azimuth = torch.deg2rad(azimuth_deg.reshape(-1).float() % 360.0)
            parts += [sinusoid(polar, 512), sinusoid(azimuth, 512)]
        return torch.cat(parts, dim=-1)

    def network(self, x: Tensor, sigma: Tensor, clip: Tensor, cond: Tensor, vector: Tensor, videos: int) -> Tensor:
        """D(x; σ) for rows [N = videos·T, 4, h, w] (video-major) with per-row σ [N], CLIP tokens [N,1,1024],
        concat latents [N,4,h,w] and vectors [N,V]."""
        p = next(self.unet.parameters())
        s = sigma.float().reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in = 1 / (s**2 + 1), -s / (s**2 + 1).sqrt(), 1 / (s**2 + 1).sqrt()
        frames = x.shape[0] // videos
        net_in = torch.cat([x.float() * c_in, cond.float()], dim=1).to(p)
        out = self.unet(net_in, 0.25 * sigma.float().log().to(p.device), context=clip.to(p), y=vector.to(p),
                        num_video_frames=frames, image_only_indicator=torch.zeros(videos, frames, device=p.device))
        return out.float() * c_out + x.float() * c_skip

    @torch.no_grad()
    def denoise(self, x: Tensor, sigma: Tensor, clip: Tensor, cond: Tensor, elevation_deg: Tensor,
                azimuth_deg: Tensor, guidance: Tensor | None = None, cond_aug: float = 1e-5) -> Tensor:
        """x₀ [B,T,4,h,w] for noisy latents x [B,T,4,h,w] at σ [B], image CLIP embeddings [B,1024], image latents
        [B,4,h,w] and cameras [B,T] (degrees); guidance [T]: per-frame CFG scales (None: conditional only)."""
        b, t = x.shape[:2]
        rows = x.reshape(b * t, *x.shape[2:])
        sig = sigma.float().repeat_interleave(t)
        tok = clip.float().repeat_interleave(t, 0)[:, None]
        lat = cond.float().repeat_interleave(t, 0)
        vec = self.camera_vector(elevation_deg, azimuth_deg, cond_aug)
        if guidance is None:
            return self.network(rows, sig, tok, lat, vec, b).reshape(x.shape)
        both = self.network(torch.cat([rows, rows]), torch.cat([sig, sig]), torch.cat([torch.zeros_like(tok), tok]),
                            torch.cat([torch.zeros_like(lat), lat]), torch.cat([vec, vec]), 2 * b)
        x_u, x_c = (o.reshape(x.shape) for o in both.chunk(2))
        return x_u + guidance.float().to(x_u.device).reshape(1, t, 1, 1, 1) * (x_c - x_u)

    @torch.no_grad()
    def sample(self, clip: Tensor, cond: Tensor, elevation_deg: Tensor, azimuth_deg: Tensor, steps: int = 50,
               max_scale: float = 2.5, generator: torch.Generator | None = None) -> Tensor:
        """Multi-view latents [B,T,4,h,w] (SD-scaled) for the image embeddings and cameras [B,T] (degrees):
        deterministic Euler steps over `karras_sigmas(steps)` with triangle guidance up to `max_scale`."""
        b, t = elevation_deg.shape
        sigmas = karras_sigmas(steps)
        x = torch.randn(b, t, 4, *cond.shape[-2:], generator=generator) * math.sqrt(1.0 + float(sigmas[0]) ** 2)
        scales = triangle_scales(t, max_scale)
        for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
            x0 = self.denoise(x, s.repeat(b), clip, cond, elevation_deg, azimuth_deg, scales)
            x = x + (s_next - s) * (x - x0) / s
        return x


class SV3DGenerator:
    """SV3D behind the bundled generator's interface (`sample`, `encode`, `decode`, `size`, `radius`), so the
    decoder, `image_to_3d` and the bench take either: 576-px views, SD-scaled latents [B,V,4,72,72]. The image
    encoders are the caller's, as for `SV3DDenoiser`: `clip_image(images [B,3,576,576] in [0,1]) -> [B,1024]`
    (SV3D's OpenCLIP ViT-H/14 image embedding) and `vae` (a diffusers AutoencoderKL holding SV3D's VAE;
    latents scaled by `scale`). `radius` and `fov_deg` describe SV3D's training cameras and must be given."""

    def __init__(self, denoiser: SV3DDenoiser, vae, clip_image, radius: float, fov_deg: float,
                 scale: float = 0.18215, size: int = 576) -> None:
        self.denoiser, self.vae, self.clip_image = denoiser, vae, clip_image
        self.radius, self.fov_deg, self.scale, self.size = float(radius), float(fov_deg), float(scale), int(size)

    def eval(self) -> SV3DGenerator:
        return self

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """SD-scaled latents [N,4,h,w] (posterior means) of images [N,3,S,S] in [0,1]."""
        return self.vae.encode(images * 2.0 - 1.0).latent_dist.mean * self.scale

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Images [N,3,S,S] in [0,1] of SD-scaled latents [N,4,h,w]."""
        return ((self.vae.decode(latents / self.scale).sample + 1.0) * 0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def sample(self, images: Tensor, elevation_deg: Tensor, azimuth_deg: Tensor, steps: int = 50,
               guidance: float = 2.5, generator: torch.Generator | None = None, progress=None) -> Tensor:
        """Latents [B,V,4,h,w] of views at azimuths [V] (degrees, relative to the input view) on the ring at
        elevation [B]: SV3D's Euler sampler with triangle guidance up to `guidance`; the image conditions as
        SV3D's do (its CLIP embedding, its unscaled latent mode)."""
        b, v = images.shape[0], len(azimuth_deg)
        clip = self.clip_image(images)
        cond = self.vae.encode(images * 2.0 - 1.0).latent_dist.mode()
        el = elevation_deg.reshape(b, 1).expand(b, v).float()
        az = azimuth_deg.reshape(1, v).expand(b, v).float()
        out = self.denoiser.sample(clip, cond, el, az, steps, guidance, generator)
        if progress is not None:
            progress(steps, steps)
        return out
