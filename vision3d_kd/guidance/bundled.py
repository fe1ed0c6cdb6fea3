"""Building blocks of the bundled prior (`vision3d_kd/assets/prior/`, trained by `tools/train_prior.py`): a word-level
tokenizer over the procedural world's captions, and Stable-Diffusion-shaped networks sized for 64×64
images — a small `AutoencoderKL` (4× down: 16×16×4 latents), a CLIP text encoder and a
`UNet2DConditionModel` on latents that takes the camera through a projection class embedding.
Saved as an ordinary diffusers pipeline directory, so `DiffusersPrior` and diffusers'
`DiffusionPipeline.from_pretrained` load it like any Stable Diffusion checkout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.objects import COLOURS, FAMILIES, NOUNS
from .prior import CAMERA_FEATURES

__all__ = ["PriorSize", "SIZES", "vocabulary", "build_tokenizer", "build_text_encoder", "build_vae", "build_unet",
           "build_scheduler", "save_pipeline"]

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


@dataclass(frozen=True)
class PriorSize:
    """Network widths: text (hidden, layers), VAE channels per level, UNet channels per level and
    ResNet layers per block."""

    text_hidden: int
    text_layers: int
    vae_channels: tuple[int, ...]
    unet_channels: tuple[int, ...]
    unet_layers: int
    max_words: int = 16


SIZES = {
    "tiny": PriorSize(32, 1, (8, 16, 16), (32, 32, 32), 1),  # tests: seconds on CPU
    "full": PriorSize(128, 3, (16, 32, 64), (64, 128, 128), 1),  # the bundled prior: ~0.6 s/UNet step on 2 cores
}


# words added to the world after the first bundled prior: they go after the sorted first words, in this order,
# so every earlier word keeps its id and a prior can be fine-tuned onto the larger vocabulary (--init-from)
ADDED_WORDS = ("white", "black")


def vocabulary() -> list[str]:
    """Every word the world's captions use (lower case), after the special tokens: the first words sorted,
    then ADDED_WORDS that the world uses."""
    words = {"a", "an", "with", "roof", "cap", "house", "mushroom", "front", "side", "back", "overhead", "view",
             ","}
    words |= set(COLOURS) | set(FAMILIES) | set(NOUNS.values())
    return SPECIAL + sorted(words - set(ADDED_WORDS)) + [w for w in ADDED_WORDS if w in words]


def build_tokenizer(max_words: int = 16):
    """A transformers fast tokenizer: lower-cased, split on whitespace and punctuation, one id per word
    (unknown words -> [UNK]), wrapped in [BOS] ... [EOS], padded with [PAD] to max_words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", model_max_length=max_words)


def build_text_encoder(size: PriorSize):
    """A CLIPTextModel over the word vocabulary (causal, like CLIP; last hidden states are the embedding)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=len(vocabulary()), hidden_size=size.text_hidden,
                         intermediate_size=2 * size.text_hidden, num_hidden_layers=size.text_layers,
                         num_attention_heads=4, max_position_embeddings=size.max_words, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3, projection_dim=size.text_hidden)
    return CLIPTextModel(cfg)


def build_vae(size: PriorSize, image_size: int = 64):
    """AutoencoderKL with len(vae_channels)-1 downsamplings (64 px -> 16×16×4 with three levels)."""
    from diffusers import AutoencoderKL

    n = len(size.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=size.vae_channels,
                         layers_per_block=1, latent_channels=4, norm_num_groups=min(8, size.vae_channels[0]),
                         sample_size=image_size)


def build_unet(size: PriorSize, sample_size: int = 16, in_channels: int = 4, camera: bool = True):
    """UNet2DConditionModel: a plain top level, cross-attention below; camera (CAMERA_FEATURES) through
    the projection class embedding when `camera`."""
    from diffusers import UNet2DConditionModel

    n = len(size.unet_channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1)
    up = ("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",)
    extra = {"class_embed_type": "projection", "projection_class_embeddings_input_dim": CAMERA_FEATURES} if camera \
        else {}
    return UNet2DConditionModel(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
                                layers_per_block=size.unet_layers, block_out_channels=size.unet_channels,
                                down_block_types=down, up_block_types=up, cross_attention_dim=size.text_hidden,
                                attention_head_dim=8, norm_num_groups=min(32, size.unet_channels[0]), **extra)


def build_scheduler():
    """Stable Diffusion's DDPM schedule (1000 steps, scaled-linear betas 0.00085-0.012), epsilon prediction."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, prediction_type="epsilon", clip_sample=False)


def save_pipeline(out: Path, unet, text_encoder, tokenizer, scheduler, vae=None, half: bool = True) -> Path:
    """Write a diffusers pipeline directory (StableDiffusionPipeline layout without safety checker; a pixel
    pipeline when vae is None) that DiffusionPipeline.from_pretrained and DiffusersPrior both load.
    half: store the networks' weights as float16 (half the size; DiffusersPrior computes in float32)."""
    import copy

    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def store(model):
        return copy.deepcopy(model).to(torch.float16) if half else model

    parts = {"unet": store(unet), "text_encoder": store(text_encoder), "tokenizer": tokenizer,
             "scheduler": scheduler}
    if vae is not None:
        parts["vae"] = store(vae)
    index = {"_class_name": "StableDiffusionPipeline" if vae is not None else "DiffusionPipeline",
             "_diffusers_version": __import__("diffusers").__version__}
    for name, obj in parts.items():
        obj.save_pretrained(out / name)
        config = out / name / "config.json"
        if config.is_file():  # where it was loaded from is a path on the machine that trained it
            saved = json.loads(config.read_text())
            if saved.pop("_name_or_path", None) is not None:
                config.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        lib = "diffusers" if type(obj).__module__.startswith("diffusers") else "transformers"
        index[name] = [lib, type(obj).__name__]
    if vae is not None:
        index.update({"safety_checker": [None, None], "feature_extractor": [None, None],
                      "requires_safety_checker": False, "image_encoder": [None, None]})
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return out
