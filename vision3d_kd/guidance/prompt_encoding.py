"""Prompt → text-encoder states, computed the way each diffusers pipeline's own `encode_prompt` does:

- CLIP (Stable Diffusion 1.x/2.x, the bundled prior): padded to the tokenizer's `model_max_length`, the
  encoder's last hidden state (after its final layer norm); an attention mask only where the encoder's
  config asks for one (`use_attention_mask`).
- SDXL (two CLIP encoders): each encoder's penultimate hidden state (no final norm), concatenated along
  the width, and the pooled, projected output of the second (`CLIPTextModelWithProjection.text_embeds`).
- T5 (DeepFloyd IF): the text lower-cased and stripped, padded to 77 tokens, and the attention mask
  passed to the encoder (IF's pipeline does; the UNet is then called without it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["PromptEncoder", "IF_MAX_LENGTH"]

IF_MAX_LENGTH = 77  # IFPipeline.encode_prompt pads and truncates to 77 tokens whatever the tokenizer says


class PromptEncoder:
    """Encodes prompt lists with a pipeline's tokenizer(s) and text encoder(s) (see the module docstring).

    `kind` is "sdxl" when a second encoder is given, "t5" for a T5-family encoder, else "clip"."""

    def __init__(self, tokenizer: Any, text_encoder: Any, tokenizer_2: Any = None, text_encoder_2: Any = None) -> None:
        self.pairs = [(tokenizer, text_encoder)] + ([(tokenizer_2, text_encoder_2)] if text_encoder_2 else [])
        model_type = str(getattr(text_encoder.config, "model_type", ""))
        self.kind = "sdxl" if text_encoder_2 is not None else ("t5" if model_type in ("t5", "umt5", "mt5") else "clip")

    @property
    def device(self) -> torch.device:
        return next(self.pairs[0][1].parameters()).device

    def _tokens(self, tokenizer: Any, encoder: Any, texts: list[str]) -> tuple[Tensor, Tensor | None]:
        """Token ids [B,L] and the attention mask [B,L] when the encoder is to be given one."""
        if self.kind == "t5":
            texts, length = [t.lower().strip() for t in texts], IF_MAX_LENGTH
        else:
            length = int(tokenizer.model_max_length)
            if length > 100_000:  # a tokenizer config without model_max_length: the encoder's position limit
                length = int(encoder.config.max_position_embeddings)
        tok = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        use_mask = self.kind == "t5" or bool(getattr(encoder.config, "use_attention_mask", False))
        return tok.input_ids.to(self.device), tok.attention_mask.to(self.device) if use_mask else None

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[Tensor, Tensor | None]:
        """(states [B,L,D], pooled [B,P] for SDXL else None) for a list of prompts."""
        if self.kind != "sdxl":
            tokenizer, encoder = self.pairs[0]
            ids, mask = self._tokens(tokenizer, encoder, texts)
            return encoder(ids, attention_mask=mask)[0], None
        states, pooled = [], None
        for tokenizer, encoder in self.pairs:
            ids, _ = self._tokens(tokenizer, encoder, texts)
            out = encoder(ids, output_hidden_states=True)
            if pooled is None and out[0].dim() == 2:  # the projected, pooled output of the second encoder
                pooled = out[0]
            states.append(out.hidden_states[-2])
        return torch.cat(states, dim=-1), pooled
