"""View-dependent prompts (DreamFusion): the prompt gets ", front view" within 45° of azimuth 0,
", back view" beyond 135°, ", overhead view" above 60° elevation and ", side view" otherwise
(`data.objects.view_suffix`, the same rule the bundled prior's captions follow). The four variants are
encoded once; `for_cameras` picks one per camera."""

from __future__ import annotations

import torch

from ..data.objects import view_suffix
from .prior import CameraCondition, DiffusionPrior, PromptEmbeddings

__all__ = ["ViewPrompts", "SUFFIXES", "view_prompt"]

SUFFIXES = (", front view", ", side view", ", back view", ", overhead view")


def view_prompt(prompt: str, elevation_deg: float, azimuth_deg: float) -> str:
    """`prompt` (stripped) plus the view suffix of a camera at this elevation/azimuth (degrees), unless the
    prompt already ends with a view (" ... view")."""
    text = prompt.strip()
    return text if text.endswith(" view") else text + view_suffix(elevation_deg, azimuth_deg)


class ViewPrompts:
    """Text embeddings of `prompt` + each view suffix (or of the bare prompt with view_dependent=False), and
    of the bare prompt (`PromptEmbeddings.plain`)."""

    def __init__(self, prior: DiffusionPrior, prompt: str, negative: str | None = None,
                 view_dependent: bool = True) -> None:
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        self.prompt, self.view_dependent = prompt.strip(), view_dependent
        texts = [self.prompt + s for s in SUFFIXES] if view_dependent else [self.prompt]
        self.texts = texts
        negative = negative or None  # "" = no negative prompt: the model's own default (zeros for SDXL)
        self._emb = prior.text_embeddings(texts, negative)
        self._plain = prior.text_embeddings([self.prompt], negative) if view_dependent else self._emb

    def text_for(self, elevation_deg: float, azimuth_deg: float) -> str:
        """The prompt a camera at this elevation/azimuth (degrees) sees."""
        return self.prompt + view_suffix(elevation_deg, azimuth_deg) if self.view_dependent else self.prompt

    def for_cameras(self, camera: CameraCondition) -> PromptEmbeddings:
        """Embeddings [B,L,D] (cond and uncond) for each camera's view."""
        if not self.view_dependent:
            idx = torch.zeros(len(camera.elevation_deg), dtype=torch.long)
        else:
            idx = torch.tensor([SUFFIXES.index(view_suffix(float(e), float(a)))
                                for e, a in zip(camera.elevation_deg, camera.azimuth_deg, strict=True)])
        e, plain, n = self._emb, self._plain, len(idx)  # plain: the bare prompt's embeddings, one row
        if e.pooled is None:
            return PromptEmbeddings(e.cond[idx], e.uncond[idx], plain.cond.expand(n, -1, -1))
        return PromptEmbeddings(e.cond[idx], e.uncond[idx], plain.cond.expand(n, -1, -1), e.pooled[idx],
                                e.pooled_uncond[idx], plain.pooled.expand(n, -1))
