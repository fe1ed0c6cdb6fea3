"""Tiny randomly initialised diffusers pipelines built in tests (seconds to create), each with the structure
of the real model it stands for: a character-level CLIP text encoder, small UNets, Stable Diffusion 1.x
(ε) and 2.x (v-prediction, linear attention projections, "!"-padded tokenizer), SDXL (two CLIP encoders,
the second with a projection, "text_time" added conditions, a force-upcast VAE) and DeepFloyd IF stage I
(a T5 encoder with a Unigram tokenizer, a pixel UNet with simple cross-attention, a learnt variance)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["a", "red", "blue", "mug", "ball", "front", "back", "view", ","]


def tiny_clip(tmp_path, pad: str = "<|endoftext|>", hidden: int = 32, layers: int = 2, projection: int = 0,
              act: str = "quick_gelu"):
    """A CLIP tokenizer over single characters (no merges) and a CLIP text model (`layers` deep, `hidden`
    wide; with a text projection of that size when `projection`); pad: the padding token (SD 2.x and
    SDXL's second tokenizer pad with "!", not the end token)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    chars = sorted(set("".join(WORDS)))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars + (["!"] if pad == "!" else []):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    folder = tmp_path / f"clip-{len(vocab)}"
    folder.mkdir(exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=12, pad_token=pad)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=12, bos_token_id=0,
                         eos_token_id=1, pad_token_id=vocab[pad], hidden_act=act, projection_dim=projection or hidden)
    torch.manual_seed(0)
    return tok, (CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)).eval()


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


def _save(pipe, path: Path, name: str) -> Path:
    pipe.save_pretrained(path / name)
    return path / name


def save_tiny_sd2v(path: Path) -> Path:
    """A tiny Stable Diffusion 2.x-style pipeline: v-prediction (DDIM), linear attention projections, a
    "!"-padded tokenizer and a GELU text encoder, under path/sd2v."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tok, text = tiny_clip(path, pad="!", act="gelu")
    torch.manual_seed(3)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        sample_size=32)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                          steps_offset=1)
    return _save(StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                         safety_checker=None, feature_extractor=None, requires_safety_checker=False),
                 path, "sd2v")


def save_tiny_sdxl(path: Path) -> Path:
    """A tiny SDXL-style pipeline under path/sdxl: CLIP encoders of widths 32 and 32 (the second with a
    16-wide projection, "!"-padded), a UNet with cross-attention width 64 (their concatenation) and "text_time"
    added conditions (6 time ids × 8 + the 16-wide pooled text), a force-upcast VAE, Euler scheduler."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tok1, te1 = tiny_clip(path, layers=3)
    tok2, te2 = tiny_clip(path, pad="!", layers=3, projection=16, act="gelu")
    torch.manual_seed(4)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                                transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=6 * 8 + 16,
                                cross_attention_dim=64, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        sample_size=32, scaling_factor=0.13025, force_upcast=True)
    sched = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                   timestep_spacing="leading", steps_offset=1)
    return _save(StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok1,
                                           tokenizer_2=tok2, unet=unet, scheduler=sched, add_watermarker=False),
                 path, "sdxl")


def tiny_t5():
    """A Unigram T5 tokenizer over the test words and letters (no sentencepiece files) and a 2-layer T5
    encoder (gated GELU, as T5 v1.1 / IF's T5-XXL)."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -1.0) for w in WORDS] + [(c, -3.0) for c in "abcdefghijklmnopqrstuvwxyz,"]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=77)
    torch.manual_seed(5)
    cfg = T5Config(vocab_size=len(tok), d_model=48, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", relative_attention_num_buckets=8)
    return tok, T5EncoderModel(cfg).eval()


def save_tiny_if(path: Path) -> Path:
    """A tiny DeepFloyd IF stage I-style pipeline under path/if: T5 text (48 wide, projected to the UNet's 32),
    a 16-px pixel UNet with simple cross-attention and "text" added embedding, 6 output channels (ε and a
    learnt variance), the squared-cosine DDPM schedule with thresholding."""
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel

    tok, t5 = tiny_t5()
    torch.manual_seed(6)
    unet = UNet2DConditionModel(sample_size=16, layers_per_block=1, block_out_channels=(16, 32),
                                down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
                                mid_block_type="UNetMidBlock2DSimpleCrossAttn",
                                up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"), in_channels=3,
                                out_channels=6, cross_attention_dim=32, encoder_hid_dim=48, attention_head_dim=8,
                                addition_embed_type="text", addition_embed_type_num_heads=2,
                                cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift",
                                act_fn="gelu", norm_num_groups=8)
    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", thresholding=True, dynamic_thresholding_ratio=0.95,
                          sample_max_value=1.0, prediction_type="epsilon", variance_type="learned_range")
    return _save(IFPipeline(tokenizer=tok, text_encoder=t5, unet=unet, scheduler=sched, safety_checker=None,
                            feature_extractor=None, watermarker=None, requires_safety_checker=False), path, "if")
