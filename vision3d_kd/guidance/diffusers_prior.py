"""`DiffusersPrior`: a `DiffusionPrior` over any local diffusers pipeline directory — Stable Diffusion
1.x/2.x (VAE latents, CLIP text encoder; ε or v prediction), SDXL (two text encoders, pooled embeddings and
size/crop time ids), DeepFloyd IF stage I (pixels, T5 with its attention mask, a learnt variance) and the
bundled prior in `vision3d_kd/assets/prior/` (a latent pipeline whose UNet takes the camera through its
class embedding). Text embeddings and guided noise equal the pipelines' own `encode_prompt` and UNet call
+ CFG (tests/test_prior_parity.py). Nothing is downloaded: the directory must hold every component its
`model_index.json` lists; networks load in the chosen dtype, from `fp16` variant files where present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..assets import default_prior_path
from ..errors import ConfigError
from .pipeline_files import MODELS, OPTIONAL, load_component, pipeline_components, pipeline_index
from .prior import CAMERA_FEATURES, CameraCondition, DiffusionPrior, PromptEmbeddings, camera_features
from .prompt_encoding import PromptEncoder

__all__ = ["DiffusersPrior", "pipeline_components", "load_prior"]


class DiffusersPrior(DiffusionPrior):
    """A local diffusers pipeline as a DiffusionPrior (see the module docstring).

    path: the pipeline directory; device / dtype: where and in which precision the networks run.
    Latents are the VAE posterior mean times its scaling factor (deterministic); pixel models see
    images mapped to [-1, 1] at the UNet's sample size."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        import diffusers
        import transformers

        # loading local weights needs no progress bars or hub chatter on stderr
        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        index = pipeline_index(Path(path))
        comps = pipeline_components(Path(path), index)
        modules = {name: load_component(Path(path), name, lib, cls, dtype if name in MODELS else None)
                   for name, (lib, cls) in comps.items() if name not in OPTIONAL}
        zeros = bool(index.get("force_zeros_for_empty_prompt"))
        self._setup(Path(path), modules, device, dtype, zeros, cast=False)  # (loaded in dtype: T5 keeps "wo" fp32)

    @classmethod
    def from_modules(cls, modules: dict[str, Any], device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32, force_zeros_for_empty_prompt: bool = True,
                     name: str = "<in memory>") -> DiffusersPrior:
        """A prior over pipeline components already in memory ({"unet": ..., "text_encoder": ..., "tokenizer":
        ..., "scheduler": ..., optional "vae", "text_encoder_2", "tokenizer_2"}), as if loaded from a directory."""
        prior = cls.__new__(cls)
        prior._setup(Path(name), dict(modules), device, dtype, force_zeros_for_empty_prompt, cast=True)
        return prior

    def _setup(self, path: Path, modules: dict[str, Any], device: torch.device | str, dtype: torch.dtype,
               force_zeros: bool, cast: bool) -> None:
        self.path, self.device, self.dtype = path, torch.device(device), dtype

        def net(name: str):
            module = modules[name].to(self.device, dtype) if cast else modules[name].to(self.device)
            return module.eval().requires_grad_(False)

        self.unet, self.text_encoder, self.tokenizer = net("unet"), net("text_encoder"), modules["tokenizer"]
        second = "text_encoder_2" in modules and "tokenizer_2" in modules
        self.prompts = PromptEncoder(self.tokenizer, self.text_encoder, modules.get("tokenizer_2"),
                                     net("text_encoder_2") if second else None)
        # SDXL's pipeline gives zero negative embeddings when no negative prompt is given
        self.zeros_for_no_negative = second and force_zeros
        self.vae = None
        if "vae" in modules:  # a VAE marked force_upcast (SDXL's) overflows in fp16: the pipeline runs it in fp32
            self.vae = net("vae")
            if dtype == torch.float16 and self.vae.config.get("force_upcast", False):
                self.vae = self.vae.float()
        self.scheduler = sched = modules["scheduler"]
        self.alphas_cumprod = sched.alphas_cumprod.detach().float().cpu()
        self.prediction_type = str(sched.config.get("prediction_type", "epsilon"))
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"{self.path}: prediction type {self.prediction_type!r} is not supported")
        cfg = self.unet.config
        self.sample_size = int(cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0])
        self.channels = int(cfg.in_channels)
        if self.vae is not None:
            self.scale = float(self.vae.config.scaling_factor)
            self.image_size = self.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)
        else:
            self.image_size = self.sample_size
        dim = cfg.projection_class_embeddings_input_dim if cfg.class_embed_type == "projection" else None
        if dim not in (None, CAMERA_FEATURES):
            raise ConfigError(f"{self.path}: a camera embedding of size {dim} is not supported "
                              f"({CAMERA_FEATURES}: see guidance.prior.camera_features)")
        self.camera_conditioned = dim is not None
        self.time_ids = None  # SDXL: original size, crop top-left, target size (pixels), as the pipeline's defaults
        if cfg.get("addition_embed_type") == "text_time":
            if self.prompts.kind != "sdxl":
                raise ConfigError(f"{self.path}: the UNet takes pooled text and time ids (SDXL) but the pipeline "
                                  "lists no text_encoder_2")
            self.time_ids = torch.tensor([[self.image_size, self.image_size, 0, 0, self.image_size, self.image_size]],
                                         dtype=torch.float32)

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str], negative: list[str] | str | None = None) -> PromptEmbeddings:
        """Text-encoder states [B,L,D] (and SDXL's pooled [B,P]) for prompts and negatives. negative None: the
        pipeline's default when no negative prompt is given (zeros for SDXL, the empty prompt otherwise)."""
        neg = [negative] * len(prompts) if isinstance(negative, str) or negative is None else list(negative)
        if len(neg) != len(prompts):
            raise ValueError(f"{len(neg)} negative prompts for {len(prompts)} prompts")
        cond, pooled = self.prompts(list(prompts))
        if self.zeros_for_no_negative and all(n is None for n in neg):
            uncond, pooled_u = torch.zeros_like(cond), None if pooled is None else torch.zeros_like(pooled)
        else:
            uncond, pooled_u = self.prompts(["" if n is None else n for n in neg])
        both = (cond, uncond, pooled, pooled_u)
        cond, uncond, pooled, pooled_u = (None if x is None else x.to(self.dtype) for x in both)
        return PromptEmbeddings(cond, uncond, pooled=pooled, pooled_uncond=pooled_u)

    def encode(self, images: Tensor) -> Tensor:
        x = images.to(self.device, self.dtype if self.vae is None else self.vae.dtype) * 2.0 - 1.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if self.vae is None:
            return x
        return (self.vae.encode(x).latent_dist.mean * self.scale).to(self.dtype)

    def decode(self, x0: Tensor) -> Tensor:
        x = x0.to(self.device, self.dtype if self.vae is None else self.vae.dtype)
        if self.vae is not None:
            x = self.vae.decode(x / self.scale).sample
        return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0)

    def added_conditions(self, pooled: Tensor | None, batch: int) -> dict[str, Tensor] | None:
        """The UNet's `added_cond_kwargs` for a batch: SDXL's pooled text [B,P] and time ids [B,6]; else None."""
        if self.time_ids is None:
            return None
        if pooled is None:
            raise ValueError(f"{self.path}: this prior needs pooled text embeddings (SDXL)")
        return {"text_embeds": pooled.to(self.device, self.dtype),
                "time_ids": self.time_ids.to(self.device, self.dtype).expand(batch, -1)}

    def model_output(self, x_t: Tensor, t: Tensor, emb: Tensor, camera: CameraCondition | None,
                     pooled: Tensor | None = None) -> Tensor:
        labels = None
        if self.camera_conditioned:
            if camera is None:
                raise ValueError(f"{self.path}: this prior is camera-conditioned; pass the camera")
            labels = camera_features(camera).to(self.device, self.dtype)
        out = self.unet(x_t.to(self.device, self.dtype), t.to(self.device), emb.to(self.device, self.dtype),
                        class_labels=labels, added_cond_kwargs=self.added_conditions(pooled, x_t.shape[0])).sample
        return out[:, : self.channels]  # IF-style UNets also predict a variance in the extra channels


def load_prior(path: str | Path | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> DiffusersPrior:
    """The local diffusers pipeline at `path`, or the bundled prior (vision3d_kd/assets/prior) when None,
    its networks computing in `dtype`."""
    return DiffusersPrior(default_prior_path(path), device=device, dtype=dtype)
