"""White on white: the bundled prior only ever saw objects on a white background, so a white object's
renders give score distillation no colour channel that pins their opacity — a surface of opacity α and albedo
a over white shows α·a·s + (1 − α), and for a target near white many (α, a) pairs fit, down to faint shells
(bench/TUNING.md: a lone white cone came out as a speckled shell of IoU 0.46, seed 0).

The gray proxy breaks the tie with a word the prior knows: on some steps an object whose caption names white
is rendered with its albedo times gray/white (the world's albedos, `data.objects.COLOURS`) and the prior is
told "gray" instead of "white". A gray object over white needs its full opacity, and the albedo it learns is
still white (gray = scale · white). Textureless renders (a fixed albedo) are left as they are.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from ..data.objects import COLOURS

__all__ = ["proxy_caption", "proxy_albedo_scale", "WORD", "PROXY_WORD"]

WORD, PROXY_WORD = "white", "gray"
_WORD_RE = re.compile(rf"\b{WORD}\b")


def proxy_caption(caption: str) -> str | None:
    """`caption` with the word white replaced by gray (every occurrence, whole words only); None when it does
    not name white."""
    if not _WORD_RE.search(caption):
        return None
    return _WORD_RE.sub(PROXY_WORD, caption)


def proxy_albedo_scale(device: torch.device | str = "cpu") -> Tensor:
    """Per-channel factor [3] that turns the world's white albedo into its gray one."""
    return torch.tensor(COLOURS[PROXY_WORD], device=device) / torch.tensor(COLOURS[WORD], device=device)
