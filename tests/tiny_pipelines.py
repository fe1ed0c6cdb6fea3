"""Tiny randomly initialised diffusers pipelines built in tests (seconds to create): a character-level
CLIP text encoder, small UNets and a Stable-Diffusion-style latent pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "red", "blue", "mug", "ball", "front", "back", "view", ","]


def tiny_clip(tmp_path):
    """A CLIP tokenizer over single characters (no merges) and a 2-layer CLIP text model."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = sorted(set("".join(WORDS)))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=12)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=12, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1)
    torch.manual_seed(0)
    return tok, CLIPTextModel(cfg).eval()


def tiny_unet(in_ch: int, out_ch: int, sample: int, camera: bool = False):
    from diffusers import UNet2DConditionModel

    extra = {"class_embed_type": "projection", "projection_class_embeddings_input_dim": 5} if camera else {}
    torch.manual_seed(1)
    return UNet2DConditionModel(sample_size=sample, in_channels=in_ch, out_channels=out_ch, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=8, **extra)


def save_tiny_sd(path: Path, camera: bool = False) -> Path:
    """Save a tiny Stable-Diffusion-style pipeline (VAE 4x down, 32-px images) under path/pipe."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline

    tok, text = tiny_clip(path)
    torch.manual_seed(2)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        sample_size=32)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=tiny_unet(4, 4, 16, camera),
                                   scheduler=DDPMScheduler(beta_schedule="scaled_linear"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path / "pipe")
    return path / "pipe"
