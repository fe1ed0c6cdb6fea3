"""The `DiffusionPrior` interface score distillation talks to: text embeddings, the model's space
(latents or pixels), noise prediction with classifier-free guidance, and the noise schedule.

Conventions: images are [B,3,H,W] RGB in [0,1]; timesteps are integers in [0, T); `alphas_cumprod`
[T] is ᾱ_t of the DDPM forward process x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε; noise predictions are always
returned as ε (a v-prediction model's output v is converted with ε = √ᾱ_t v + √(1−ᾱ_t) x_t), in float32.
Classifier-free guidance uses the diffusers form ε̂ = ε_∅ + s (ε_c − ε_∅), applied like the pipelines to
the network's raw output (ε, or v before its conversion; the same maths, the same rounding).
Camera conditioning (optional) describes the camera that rendered the image: elevation and azimuth
in degrees (azimuth 0 on +x, z up, see `cameras_from_spherical`) and distance in scene units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PromptEmbeddings", "CameraCondition", "DiffusionPrior", "camera_features", "CAMERA_FEATURES",
           "v_to_epsilon"]

CAMERA_FEATURES = 5  # sin/cos elevation, sin/cos azimuth, radius / 4


@dataclass
class PromptEmbeddings:
    """Text-encoder outputs [B,L,D] for the prompts (cond) and the negative / empty prompt (uncond); `plain`:
    the prompt without its view suffix (what VSD's LoRA is conditioned on), None when cond has none.
    `pooled*` [B,P]: the pooled text embeddings of the same three (SDXL's second encoder), else None."""

    cond: Tensor
    uncond: Tensor
    plain: Tensor | None = None
    pooled: Tensor | None = None
    pooled_uncond: Tensor | None = None
    pooled_plain: Tensor | None = None

    def __len__(self) -> int:
        return self.cond.shape[0]

    def bare(self) -> tuple[Tensor, Tensor | None]:
        """(states [B,L,D], pooled [B,P] or None) of the prompt without its view suffix — `plain` and
        `pooled_plain` — or of cond when the embeddings carry no plain (what VSD's LoRA is conditioned on)."""
        return (self.cond, self.pooled) if self.plain is None else (self.plain, self.pooled_plain)

    def pooled_pair(self) -> Tensor | None:
        """[2B,P]: pooled uncond then cond (the doubled batch of a guided call), or None."""
        return None if self.pooled is None else torch.cat([self.pooled_uncond, self.pooled])


@dataclass
class CameraCondition:
    """Per-image camera [B]: elevation_deg, azimuth_deg (degrees), radius (scene units)."""

    elevation_deg: Tensor
    azimuth_deg: Tensor
    radius: Tensor

    @classmethod
    def from_c2w(cls, c2w: Tensor) -> CameraCondition:
        """From camera-to-world matrices [B,4,4] (camera looking at the origin, z up)."""
        pos = c2w[:, :3, 3]
        r = pos.norm(dim=-1)
        elev = torch.rad2deg(torch.asin((pos[:, 2] / r.clamp_min(1e-9)).clamp(-1, 1)))
        return cls(elev, torch.rad2deg(torch.atan2(pos[:, 1], pos[:, 0])), r)


def camera_features(cam: CameraCondition) -> Tensor:
    """[B, CAMERA_FEATURES] vector fed to a camera-conditioned UNet's class embedding: sin and cos of
    elevation and azimuth (continuous across 0/360°) and radius / 4."""
    el, az = torch.deg2rad(cam.elevation_deg.float()), torch.deg2rad(cam.azimuth_deg.float())
    return torch.stack([el.sin(), el.cos(), az.sin(), az.cos(), cam.radius.float() / 4.0], dim=-1)


def v_to_epsilon(v: Tensor, x_t: Tensor, alphas_cumprod_t: Tensor) -> Tensor:
    """ε from a v-prediction: ε = √ᾱ_t v + √(1−ᾱ_t) x_t (ᾱ_t [B] broadcast over the image)."""
    a = alphas_cumprod_t.reshape(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype)
    return a.sqrt() * v + (1 - a).sqrt() * x_t


class DiffusionPrior:
    """What score distillation needs from a diffusion model (see the module docstring).

    Subclasses set `alphas_cumprod` [T], `prediction_type` ('epsilon' or 'v_prediction'), `channels`,
    `sample_size` (model-space height/width), `image_size` (pixels), `camera_conditioned`, and implement
    `text_embeddings`, `encode`, `decode` and `model_output`."""

    alphas_cumprod: Tensor
    prediction_type: str = "epsilon"
    channels: int = 4
    sample_size: int = 64
    image_size: int = 512
    camera_conditioned: bool = False

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def text_embeddings(self, prompts: list[str], negative: list[str] | str | None = None) -> PromptEmbeddings:
        """Embeddings of the prompts and their negatives (None: the model's default for no negative prompt)."""
        raise NotImplementedError

    def encode(self, images: Tensor) -> Tensor:
        """Images [B,3,H,W] in [0,1] -> model-space samples x_0 [B,C,h,w] (differentiable)."""
        raise NotImplementedError

    def decode(self, x0: Tensor) -> Tensor:
        """Model-space samples [B,C,h,w] -> images [B,3,H,W] in [0,1]."""
        raise NotImplementedError

    def model_output(self, x_t: Tensor, t: Tensor, emb: Tensor, camera: CameraCondition | None,
                     pooled: Tensor | None = None) -> Tensor:
        """The network's raw output for noisy samples x_t [B,C,h,w], timesteps t [B], text [B,L,D] and pooled
        text [B,P] (models that take one)."""
        raise NotImplementedError

    def added_conditions(self, pooled: Tensor | None, batch: int) -> dict[str, Tensor] | None:
        """Extra UNet inputs (`added_cond_kwargs`) for a batch, None for models that take none."""
        return None

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε."""
        a = self.alphas_cumprod.to(x0.device)[t].reshape(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def _raw_pair(self, x_t: Tensor, t: Tensor, emb: PromptEmbeddings,
                  camera: CameraCondition | None) -> tuple[Tensor, Tensor]:
        """The network's raw outputs (uncond, cond) [B,C,h,w] in float32: one call on the doubled batch."""
        b = x_t.shape[0]
        if len(emb) != b:
            raise ValueError(f"{len(emb)} prompt embeddings for a batch of {b}")
        cam2 = None
        if camera is not None:
            cam2 = CameraCondition(*(torch.cat([v, v]) for v in (camera.elevation_deg, camera.azimuth_deg,
                                                                  camera.radius)))
        out = self.model_output(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([emb.uncond, emb.cond]), cam2,
                                emb.pooled_pair()).float()
        return out[:b], out[b:]

    def to_epsilon(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """ε [B,C,h,w] (float32) from the network's raw output (identity for ε-prediction models)."""
        if self.prediction_type != "v_prediction":
            return out.float()
        return v_to_epsilon(out.float(), x_t.float(), self.alphas_cumprod.to(x_t.device)[t])

    def predict_noise_pair(self, x_t: Tensor, t: Tensor, emb: PromptEmbeddings,
                           camera: CameraCondition | None = None) -> tuple[Tensor, Tensor]:
        """(ε_∅, ε_c) [B,C,h,w] float32 for x_t [B,...] and t [B]: one network call on the doubled batch."""
        out_u, out_c = self._raw_pair(x_t, t, emb, camera)
        return self.to_epsilon(out_u, x_t, t), self.to_epsilon(out_c, x_t, t)

    def predict_noise(self, x_t: Tensor, t: Tensor, emb: PromptEmbeddings, camera: CameraCondition | None = None,
                      guidance_scale: float = 7.5) -> Tensor:
        """Classifier-free guided ε̂ = ε_∅ + s (ε_c − ε_∅) [B,C,h,w] float32 (guided on the raw output, as the
        pipelines do, then converted to ε)."""
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance scale must be finite, got {guidance_scale}")
        out_u, out_c = self._raw_pair(x_t, t, emb, camera)
        return self.to_epsilon(out_u + guidance_scale * (out_c - out_u), x_t, t)
