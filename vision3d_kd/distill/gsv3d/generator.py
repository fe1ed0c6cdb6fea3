"""The bundled multi-view generator (GSV3D's stand-in for SV3D, `vision3d_kd/assets/mv_generator`): an
image-conditioned latent diffusion model that denoises the latents [V,4,16,16] of V views on the input view's
elevation ring together (64-px views; the bundled prior's VAE).

Shaped like SV3D, sized for a CPU:
- every frame's noisy latent is concatenated with the input view's latent (8 channels into the UNet);
- every frame's camera — elevation, azimuth relative to the input view, radius — enters through the UNet's
  projection class embedding (the vector of `guidance.prior.camera_features`);
- cross-attention reads tokens of the input image (a small convolutional encoder: SV3D's CLIP token's role);
- self-attention runs over the tokens of all frames at once (`MultiViewAttention`), so frames agree (SV3D's
  temporal attention's role).
The UNet starts from the bundled text prior's (conv_in widened, the new input channels zero). ε-prediction on
Stable Diffusion's DDPM schedule; sampling is deterministic DDIM with classifier-free guidance whose
unconditional branch zeroes the input latent and the image tokens (as SV3D's does)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ...checkpoint import load_tensors, save_tensors, write_json
from ...errors import RunError
from ...guidance.prior import CameraCondition, camera_features
from ...guidance.sampling import ddim_timesteps

__all__ = ["MultiViewAttention", "ImageEncoder", "MultiViewGenerator", "ddpm_alphas_cumprod", "load_generator",
           "default_generator_path", "generator_from_prior", "DEFAULT_GUIDANCE"]


# classifier-free guidance of sampling: 4 was chosen over 2 on the validation objects (bench/TUNING.md, GSV3D)
DEFAULT_GUIDANCE = 4.0


def ddpm_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """ᾱ_t [steps] of Stable Diffusion's scaled-linear DDPM schedule (what the bundled prior was trained on)."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


class MultiViewAttention:
    """diffusers attention processor for self-attention: the tokens [B·V, N, C] of a batch item's V frames
    attend over all V·N of them (one softmax); cross-attention and V = 1 are diffusers' plain attention.
    `views` is set by `MultiViewGenerator.predict_noise` before each UNet call."""

    def __init__(self) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.views = 1
        self.inner = AttnProcessor2_0()

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, **kwargs) -> Tensor:
        if encoder_hidden_states is not None or self.views == 1:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        bv, n, c = hidden_states.shape
        joint = hidden_states.reshape(bv // self.views, self.views * n, c)
        return self.inner(attn, joint, None, attention_mask, temb).reshape(bv, n, -1)


class ImageEncoder(nn.Module):
    """Tokens [B, (S/8)², dim] of input images [B,3,S,S] in [0,1]: three stride-2 convolutions, a learned
    position embedding, layer norm — the UNet's cross-attention context."""

    def __init__(self, dim: int = 128, size: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.SiLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.SiLU(),
                                 nn.Conv2d(64, dim, 3, 2, 1))
        self.pos = nn.Parameter(torch.zeros(1, (size // 8) ** 2, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: Tensor) -> Tensor:
        f = self.net(images * 2.0 - 1.0).flatten(2).transpose(1, 2)
        return self.norm(f + self.pos)


class MultiViewGenerator(nn.Module):
    """`unet` (diffusers UNet2DConditionModel, 8 → 4 channels, camera class embedding), `vae` (frozen
    AutoencoderKL), `encoder` (ImageEncoder); images are [B,3,S,S] in [0,1] on white, latents scaled by the
    VAE's scaling factor. Cameras: ring elevation (degrees) and azimuths relative to the input view."""

    def __init__(self, unet, vae, encoder: ImageEncoder, radius: float, size: int = 64, fov_deg: float = 40.0) -> None:
        super().__init__()
        self.unet, self.vae, self.encoder = unet, vae, encoder
        self.radius, self.size, self.fov_deg = float(radius), int(size), float(fov_deg)
        self.scale = float(vae.config.scaling_factor)
        self.register_buffer("alphas_cumprod", ddpm_alphas_cumprod(), persistent=False)
        self.vae.requires_grad_(False)
        self.attention = MultiViewAttention()
        unet.set_attn_processor({name: self.attention if name.endswith("attn1.processor") else
                                 self.attention.inner for name in unet.attn_processors})

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Scaled latents [N,4,S/4,S/4] (posterior means) of images [N,3,S,S] in [0,1]."""
        return self.vae.encode(images * 2.0 - 1.0).latent_dist.mean * self.scale

    def decode(self, latents: Tensor) -> Tensor:
        """Images [N,3,S,S] in [0,1] of scaled latents [N,4,h,w] (differentiable)."""
        return ((self.vae.decode(latents / self.scale).sample + 1.0) * 0.5).clamp(0.0, 1.0)

    def cameras(self, elevation_deg: Tensor, azimuth_deg: Tensor) -> Tensor:
        """Class-embedding inputs [B,V,5] of frames at ring elevation [B] and relative azimuths [B,V]."""
        b, v = azimuth_deg.shape
        el = elevation_deg.reshape(b, 1).expand(b, v).reshape(-1)
        cam = CameraCondition(el, azimuth_deg.reshape(-1), torch.full((b * v,), self.radius))
        return camera_features(cam).reshape(b, v, -1)

    def condition(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(input latents [B,4,h,w], image tokens [B,T,D]) of input images [B,3,S,S]."""
        return self.encode(images), self.encoder(images)

    def predict_noise(self, x_t: Tensor, t: Tensor, cond: Tensor, tokens: Tensor, cams: Tensor) -> Tensor:
        """ε̂ [B,V,4,h,w] for noisy latents x_t [B,V,4,h,w] at integer timesteps t [B], input latents cond
        [B,4,h,w], image tokens [B,T,D] and frame cameras [B,V,5]."""
        b, v = x_t.shape[:2]
        x = torch.cat([x_t, cond[:, None].expand(b, v, *cond.shape[1:])], dim=2).flatten(0, 1)
        self.attention.views = v
        out = self.unet(x, t.repeat_interleave(v), encoder_hidden_states=tokens.repeat_interleave(v, dim=0),
                        class_labels=cams.flatten(0, 1)).sample
        return out.reshape(b, v, *out.shape[1:])

    def guided_noise(self, x_t: Tensor, t: Tensor, cond: Tensor, tokens: Tensor, cams: Tensor,
                     guidance: float) -> Tensor:
        """Classifier-free guided ε̂ = ε̂_u + guidance·(ε̂_c − ε̂_u) (inputs as `predict_noise`; the unconditional
        branch zeroes the input latent and tokens); guidance 1 is the conditional ε̂ alone."""
        if guidance == 1.0:
            return self.predict_noise(x_t, t, cond, tokens, cams)
        eps_c, eps_u = self.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                          torch.cat([cond, torch.zeros_like(cond)]),
                                          torch.cat([tokens, torch.zeros_like(tokens)]),
                                          torch.cat([cams, cams])).chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    def timesteps(self, steps: int) -> Tensor:
        """The `steps` DDIM timesteps `sample` visits, from the last training timestep down to 0 [steps]."""
        return ddim_timesteps(len(self.alphas_cumprod), steps)

    def x0_from_noise(self, x_t: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """x̂₀ = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t with t [B] broadcast over [B,V,C,h,w]."""
        a = self.alphas_cumprod.to(x_t.device)[t].reshape(-1, 1, 1, 1, 1)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    @torch.no_grad()
    def sample(self, images: Tensor, elevation_deg: Tensor, azimuth_deg: Tensor, steps: int = 30,
               guidance: float = DEFAULT_GUIDANCE, generator: torch.Generator | None = None,
               progress: Callable[[int, int], None] | None = None,
               trace: Callable[[int, Tensor], None] | None = None) -> Tensor:
        """Latents [B,V,4,h,w] of the V views at relative azimuths [V] on the ring at elevation [B] (degrees)
        of input images [B,3,S,S]: DDIM (η = 0) over `steps` evenly spaced timesteps, classifier-free guidance
        `guidance` (1 = none); `trace(t, x_t)` sees the chain's state entering each step."""
        b, v = images.shape[0], len(azimuth_deg)
        cond, tokens = self.condition(images)
        cams = self.cameras(elevation_deg.reshape(b), azimuth_deg.reshape(1, v).expand(b, v))
        h = cond.shape[-1]
        x = torch.randn(b, v, cond.shape[1], h, h, generator=generator).to(cond)
        ts = self.timesteps(steps)
        for i, t in enumerate(ts.tolist()):
            if trace is not None:
                trace(t, x)
            tt = torch.full((b,), t, dtype=torch.long)
            eps = self.guided_noise(x, tt, cond, tokens, cams, guidance)
            x0 = self.x0_from_noise(x, eps, tt)
            a_prev = self.alphas_cumprod[int(ts[i + 1])] if i + 1 < len(ts) else torch.tensor(1.0)
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            if progress is not None:
                progress(i + 1, len(ts))
        return x

    @torch.no_grad()
    def sample_rings(self, images: Tensor, elevation_deg: Tensor, azimuth_deg: Tensor, steps: int = 30,
                     guidance: float = DEFAULT_GUIDANCE, generator: torch.Generator | None = None, rings: int = 1,
                     keep_input: bool = False, progress: Callable[[int, int], None] | None = None,
                     trace: Callable[[int, Tensor], None] | None = None) -> tuple[Tensor, Tensor]:
        """(the first ring [B,V,4,h,w], exactly what `sample` gives, and the latents to decode): the mean of
        `rings` rings sampled one after another from `generator` (an estimate of the generator's mean ring);
        with `keep_input` the frames at relative azimuth 0 (mod 360°, the input camera) hold the input view's own
        latent instead, since that view is known exactly; `trace` sees the first ring's chain as in `sample`."""
        def tick(k: int) -> Callable[[int, int], None] | None:
            return None if progress is None else (lambda i, n: progress(k * steps + i, rings * steps))

        drawn = [self.sample(images, elevation_deg, azimuth_deg, steps, guidance, generator, tick(k),
                             trace if k == 0 else None) for k in range(rings)]
        out = torch.stack(drawn).mean(0)
        if keep_input:
            d = torch.remainder(azimuth_deg.to(torch.float64), 360.0)
            at_input = torch.minimum(d, 360.0 - d) < 1e-3
            out[:, at_input] = self.encode(images)[:, None]
        return drawn[0], out

    def save(self, out: Path, info: dict | None = None) -> None:
        """Write the generator directory: unet/ (diffusers, float16), vae/, encoder.safetensors, generator.json."""
        import copy

        from diffusers.utils import logging

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        level = logging.get_verbosity()
        logging.set_verbosity_error()  # the float16 cast's notice: nothing here must stay float32
        try:
            copy.deepcopy(self.unet).to(torch.float16).save_pretrained(out / "unet")
        finally:
            logging.set_verbosity(level)
        self.vae.save_pretrained(out / "vae")
        save_tensors(out / "encoder.safetensors", {k: v.detach().contiguous() for k, v in
                                                   self.encoder.state_dict().items()})
        write_json(out / "generator.json", {"radius": self.radius, "size": self.size, "fov_deg": self.fov_deg,
                                            "encoder_dim": int(self.encoder.pos.shape[-1]), **(info or {})})


def default_generator_path() -> Path:
    """The bundled generator's directory (package data)."""
    return Path(__file__).resolve().parents[2] / "assets" / "mv_generator"


def load_generator(path: str | Path | None = None) -> MultiViewGenerator:
    """The generator saved at `path` (default: the bundled one) in float32, eval mode."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    path = Path(path) if path else default_generator_path()
    if not (path / "generator.json").is_file():
        raise RunError(f"{path}: not a multi-view generator directory (no generator.json)")
    info = json.loads((path / "generator.json").read_text())
    unet = UNet2DConditionModel.from_pretrained(path / "unet", torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(path / "vae", torch_dtype=torch.float32)
    encoder = ImageEncoder(int(info["encoder_dim"]), int(info["size"]))
    encoder.load_state_dict(load_tensors(path / "encoder.safetensors"))
    return MultiViewGenerator(unet, vae, encoder, float(info["radius"]), int(info["size"]),
                              float(info.get("fov_deg", 40.0))).eval()


def generator_from_prior(prior_path: Path, radius: float, size: int = 64) -> MultiViewGenerator:
    """A new generator whose UNet starts from the text prior's at `prior_path` (conv_in widened to 8 input
    channels, the new ones zero; the camera class embedding and all attention kept) and whose VAE is the
    prior's; the image encoder is new (seeded by the caller)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    old = UNet2DConditionModel.from_pretrained(Path(prior_path) / "unet", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_config({**old.config, "in_channels": 2 * old.config.in_channels,
                                             "out_channels": old.config.out_channels})
    state = old.state_dict()
    w = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat([w, torch.zeros_like(w)], dim=1)
    unet.load_state_dict(state)
    vae = AutoencoderKL.from_pretrained(Path(prior_path) / "vae", torch_dtype=torch.float32)
    return MultiViewGenerator(unet, vae, ImageEncoder(int(old.config.cross_attention_dim), size), radius, size)
