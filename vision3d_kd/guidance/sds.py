"""Score distillation: the shared loop (encode, noise, predict, inject the gradient) and SDS itself.

`ScoreDistillation.loss(images, emb, camera, progress)` encodes rendered images [B,3,H,W] in [0,1]
to the prior's space z (the VAE for latent priors, differentiably), draws t from the schedule and
ε ~ N(0, I) (plus `offset_noise` · a per-channel constant shared by the batch, as in PlacidDreamer), forms
x_t = √ᾱ_t z + √(1−ᾱ_t) ε without gradient, asks the subclass for the gradient g [B,C,h,w] w.r.t. z
and injects it with the surrogate ½‖z − sg(z − g)‖² / B, whose gradient is g / B.

SDS (DreamFusion): g = w(t) (ε̂ − ε) with ε̂ = ε_∅ + s (ε_c − ε_∅) (diffusers CFG form; DreamFusion
uses s = 100) and w(t) from `schedules.weighting`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, NumericalError
from .prior import CameraCondition, DiffusionPrior, PromptEmbeddings
from .schedules import WEIGHTINGS, TimestepSchedule, weighting

__all__ = ["GuidanceConfig", "ScoreDistillation", "SDS", "surrogate_loss", "METHODS"]

METHODS = ("sds", "vsd", "bsd")


@dataclass
class GuidanceConfig:
    """Settings of every guidance (each method reads its own). Timesteps are fractions of T."""

    guidance_scale: float = 100.0     # CFG scale s (SDS, VSD's prior); BSD uses bsd_lambda instead
    weighting: str = "sds"            # w(t): sds (1−ᾱ), uniform, fantasia (√ᾱ(1−ᾱ))
    t_min: float = 0.02
    t_max: float = 0.98
    t_max_end: float | None = None    # t_max after the warm-up (VSD/BSD: 0.5)
    warmup: float = 0.0               # fraction of the run before/over which t_max moves
    anneal: str = "none"              # none | drop | linear
    grad_clip: float | None = None    # clamp each element of g to [−c, c]
    offset_noise: float = 0.0         # std of a per-channel constant added to ε (one for the batch)
    negative_prompt: str = ""
    bsd_lambda: float = 15.0          # BSD: weight λ of the classifier direction ε_c − ε_∅
    lora_rank: int = 4                # VSD: LoRA rank of the particle-score UNet
    lora_lr: float = 1e-4             # VSD: AdamW learning rate of the LoRA and its camera embedding
    lora_steps: int = 1               # VSD: LoRA updates per distillation step
    camera_dropout: float = 0.1       # VSD: probability of hiding the camera from the LoRA (whole batch)
    vsd_camera: str = "c2w"           # VSD: the LoRA's camera input: c2w (the paper's) or angles

    def validate(self) -> None:
        """Raise ConfigError for values outside their ranges."""
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"guidance.{f.name} must be finite, got {v}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown guidance.weighting {self.weighting!r}; choose {', '.join(WEIGHTINGS)}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"guidance.grad_clip must be positive, got {self.grad_clip}")
        if self.offset_noise < 0 or self.lora_lr <= 0 or self.bsd_lambda < 0:
            raise ConfigError("guidance.offset_noise and bsd_lambda must be >= 0 and lora_lr > 0")
        if not 0.0 <= self.camera_dropout <= 1.0:
            raise ConfigError(f"guidance.camera_dropout must be in [0, 1], got {self.camera_dropout}")
        if self.vsd_camera not in ("c2w", "angles"):
            raise ConfigError(f"guidance.vsd_camera must be c2w or angles, got {self.vsd_camera!r}")
        if self.lora_rank < 1 or self.lora_steps < 1:
            raise ConfigError("guidance.lora_rank and lora_steps must be >= 1")
        self.schedule()

    def schedule(self) -> TimestepSchedule:
        return TimestepSchedule(self.t_min, self.t_max, self.t_max_end, self.warmup, self.anneal)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def surrogate_loss(z: Tensor, grad: Tensor) -> Tensor:
    """½‖z − sg(z − g)‖² / B: a scalar whose gradient w.r.t. z is g / B."""
    target = (z - grad).detach()
    return 0.5 * ((z - target) ** 2).sum() / z.shape[0]


class ScoreDistillation:
    """Base class: the shared loop of the module docstring; subclasses implement `gradient`."""

    name = "base"

    def __init__(self, prior: DiffusionPrior, cfg: GuidanceConfig) -> None:
        cfg.validate()
        self.prior, self.cfg, self.schedule = prior, cfg, cfg.schedule()

    def noise_like(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """ε ~ N(0, I) plus offset_noise · N(0, 1) per channel, the same for every image of the batch."""
        eps = torch.randn(z.shape, generator=generator).to(z)
        if self.cfg.offset_noise > 0:
            eps = eps + self.cfg.offset_noise * torch.randn(1, z.shape[1], 1, 1, generator=generator).to(z)
        return eps

    def gradient(self, z: Tensor, x_t: Tensor, noise: Tensor, t: Tensor, emb: PromptEmbeddings,
                 camera: CameraCondition | None) -> Tensor:
        """g [B,C,h,w] w.r.t. z (computed without gradient)."""
        raise NotImplementedError

    def after_step(self, z: Tensor, emb: PromptEmbeddings, camera: CameraCondition | None,
                   generator: torch.Generator | None) -> dict[str, float]:
        """Hook after each distillation step (VSD trains its LoRA here); returns extra log values."""
        return {}

    def loss(self, images: Tensor, emb: PromptEmbeddings, camera: CameraCondition | None = None,
             progress: float = 0.0, generator: torch.Generator | None = None, t_max: float | None = None
             ) -> tuple[Tensor, dict[str, float]]:
        """(surrogate loss, info) for rendered images [B,3,H,W] in [0,1] (see the module docstring); `t_max`
        caps the schedule's upper timestep (a fraction of T)."""
        z = self.prior.encode(images).float()
        b = z.shape[0]
        t = self.schedule.sample(b, progress, self.prior.num_train_timesteps, generator, t_max).to(z.device)
        noise = self.noise_like(z, generator)
        with torch.no_grad():
            x_t = self.prior.add_noise(z.detach(), noise, t)
            g = self.gradient(z.detach(), x_t, noise, t, emb, camera).float()
        if not torch.isfinite(g).all():
            raise NumericalError(f"{self.name}: the guidance gradient is not finite (t = {t.tolist()})")
        if self.cfg.grad_clip is not None:
            g = g.clamp(-self.cfg.grad_clip, self.cfg.grad_clip)
        info = {"t": float(t.float().mean()), "grad_norm": float(g.flatten(1).norm(dim=1).mean())}
        info.update(self.after_step(z.detach(), emb, camera, generator))
        return surrogate_loss(z, g), info

    def abar(self, t: Tensor) -> Tensor:
        """ᾱ_t [B,1,1,1] on t's device."""
        return self.prior.alphas_cumprod.to(t.device)[t].float().reshape(-1, 1, 1, 1)


class SDS(ScoreDistillation):
    """DreamFusion's score distillation sampling: g = w(t) (ε̂ − ε)."""

    name = "sds"

    def gradient(self, z, x_t, noise, t, emb, camera):
        eps_hat = self.prior.predict_noise(x_t, t, emb, camera, self.cfg.guidance_scale)
        w = weighting(self.cfg.weighting, self.abar(t).flatten()).reshape(-1, 1, 1, 1)
        return w * (eps_hat - noise.float())
