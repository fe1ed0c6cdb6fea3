"""`DiffusersPrior`: a `DiffusionPrior` over any local diffusers pipeline directory — Stable Diffusion
1.x/2.x (VAE latents, CLIP text encoder), DeepFloyd-IF stage I style pixel pipelines (no VAE, T5 or any
transformers text encoder) and the bundled prior in `vision3d_kd/assets/prior/` (a latent pipeline whose UNet takes
the camera through its class embedding). Nothing is downloaded: the directory must hold every
component its `model_index.json` lists."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..assets import default_prior_path
from ..errors import ConfigError, DataError
from .prior import CAMERA_FEATURES, CameraCondition, DiffusionPrior, PromptEmbeddings, camera_features

__all__ = ["DiffusersPrior", "pipeline_components", "load_prior"]

_REQUIRED = ("unet", "scheduler", "text_encoder", "tokenizer")
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors",
            "pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors")


def pipeline_components(path: Path) -> dict[str, tuple[str, str]]:
    """{component: (library, class)} of a pipeline directory, checked: model_index.json exists, the four
    required components are listed, and every listed component has its folder (and weights for models).
    Raises DataError naming the first problem."""
    path = Path(path)
    index = path / "model_index.json"
    if not path.is_dir():
        raise DataError(f"{path}: no such prior directory")
    if not index.is_file():
        raise DataError(f"{path}: not a diffusers pipeline directory (no model_index.json)")
    try:
        raw = json.loads(index.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{index}: invalid JSON ({e.msg})") from None
    comps = {k: tuple(v) for k, v in raw.items()
             if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None}
    for name in _REQUIRED:
        if name not in comps:
            raise DataError(f"{path}: model_index.json lists no {name!r} component")
    for name, (_, cls) in comps.items():
        folder = path / name
        if name in ("safety_checker", "feature_extractor", "watermarker"):
            continue
        if not folder.is_dir():
            raise DataError(f"{path}: component {name!r} ({cls}) is missing: no {name}/ folder")
        if name in ("unet", "vae", "text_encoder") and not any((folder / w).is_file() for w in _WEIGHTS):
            raise DataError(f"{path}: component {name!r} has no weights in {name}/")
    return comps


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
        self.path = Path(path)
        comps = pipeline_components(self.path)
        self.device, self.dtype = torch.device(device), dtype

        def load(name: str):
            lib, cls = comps[name]
            module = {"diffusers": diffusers, "transformers": transformers}.get(lib)
            if module is None or not hasattr(module, cls):
                raise DataError(f"{self.path}: component {name!r} has unknown class {lib}.{cls}")
            try:
                return getattr(module, cls).from_pretrained(self.path / name)
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise DataError(f"{self.path}: cannot load {name!r} ({type(e).__name__}: {str(e)[:200]})") from None

        self.unet = load("unet").to(self.device, dtype).eval().requires_grad_(False)
        self.text_encoder = load("text_encoder").to(self.device, dtype).eval().requires_grad_(False)
        self.tokenizer = load("tokenizer")
        self.vae = load("vae").to(self.device, dtype).eval().requires_grad_(False) if "vae" in comps else None
        sched = load("scheduler")
        self.scheduler = sched
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

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str], negative: list[str] | str = "") -> PromptEmbeddings:
        """Last hidden states [B,L,D] of the text encoder for prompts and negatives (padded to max length)."""
        neg = [negative] * len(prompts) if isinstance(negative, str) else list(negative)
        if len(neg) != len(prompts):
            raise ValueError(f"{len(neg)} negative prompts for {len(prompts)} prompts")
        return PromptEmbeddings(self._encode_text(list(prompts)), self._encode_text(neg))

    def _encode_text(self, texts: list[str]) -> Tensor:
        tok = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        return self.text_encoder(tok.input_ids.to(self.device))[0].to(self.dtype)

    def encode(self, images: Tensor) -> Tensor:
        x = images.to(self.device, self.dtype) * 2.0 - 1.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if self.vae is None:
            return x
        return self.vae.encode(x).latent_dist.mean * self.scale

    def decode(self, x0: Tensor) -> Tensor:
        x = x0.to(self.device, self.dtype)
        if self.vae is not None:
            x = self.vae.decode(x / self.scale).sample
        return ((x + 1.0) * 0.5).clamp(0.0, 1.0)

    def model_output(self, x_t: Tensor, t: Tensor, emb: Tensor, camera: CameraCondition | None) -> Tensor:
        labels = None
        if self.camera_conditioned:
            if camera is None:
                raise ValueError(f"{self.path}: this prior is camera-conditioned; pass the camera")
            labels = camera_features(camera).to(self.device, self.dtype)
        out = self.unet(x_t.to(self.device, self.dtype), t.to(self.device), emb.to(self.device, self.dtype),
                        class_labels=labels).sample
        return out[:, : self.channels]  # IF-style UNets also predict a variance in the extra channels


def load_prior(path: str | Path | None = None, device: torch.device | str = "cpu") -> DiffusersPrior:
    """The local diffusers pipeline at `path`, or the bundled prior (vision3d_kd/assets/prior) when None."""
    return DiffusersPrior(default_prior_path(path), device=device)
