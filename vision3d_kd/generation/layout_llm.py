"""A layout from a sentence by a local language model (`v3kd generate --layout-from TEXT --llm PATH`).

As LucidDreaming asks GPT-4: the model is shown a few scenes with their layouts in the paper's form —
`('object prompt', [x, y, z, w, h, d])`, min corner and extents on a 0–512 canvas, z up, +y right as seen
from the front, smaller x behind — and continues the pattern for the user's sentence. Any local
transformers causal LM works (greedy decoding, nothing downloaded). Its answer, up to the end of the line,
is read by the same reader as a layout file (`data.layout.parse_layout`), so a malformed answer is a
one-line ConfigError that quotes it. The paper's own in-context examples are not published; the examples
here are ours.
"""

from __future__ import annotations

from pathlib import Path

from ..data.layout import Layout, parse_layout
from ..errors import ConfigError

__all__ = ["layout_prompt", "layout_from_llm", "EXAMPLES"]

INSTRUCTION = ("Place each object of the scene in a 512 x 512 x 512 box. Answer with a list of ('object', "
               "[x, y, z, w, h, d]): the corner with the smallest coordinates and the size along x, y, z. "
               "z is up, y grows to the right as seen from the front, x grows towards the viewer.")
EXAMPLES = (
    ("a red mug on a wooden table",
     "[('a wooden table', [106, 106, 0, 300, 300, 200]), ('a red mug', [206, 206, 200, 100, 100, 100])]"),
    ("two apples next to a bowl",
     "[('an apple', [206, 56, 0, 100, 100, 100]), ('a bowl', [181, 181, 0, 150, 150, 100]), "
     "('an apple', [206, 356, 0, 100, 100, 100])]"),
    ("a lamp to the left of a sofa, and a plant behind the sofa",
     "[('a lamp', [231, 16, 0, 80, 80, 250]), ('a sofa', [256, 136, 0, 160, 300, 150]), "
     "('a plant', [56, 236, 0, 100, 100, 200])]"),
)


def layout_prompt(sentence: str) -> str:
    """The text the model continues: the instruction, the examples, then the sentence."""
    shots = "".join(f"Scene: {s}\nLayout: {a}\n\n" for s, a in EXAMPLES)
    return f"{INSTRUCTION}\n\n{shots}Scene: {sentence.strip()}\nLayout:"


def layout_from_llm(sentence: str, model_path: str | Path, max_new_tokens: int = 256, device: str = "cpu") -> Layout:
    """The layout the causal LM at `model_path` (a local transformers checkout) writes for `sentence`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_path)
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory holding a transformers language model (--llm)")
    if not sentence.strip():
        raise ConfigError("layout: the sentence is empty")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True).to(device)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: cannot load a causal language model ({first})") from None
    ids = tok(layout_prompt(sentence), return_tensors="pt").to(device)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip().split("\n")[0]
    try:
        layout = parse_layout(answer, "the language model's answer")
    except ConfigError as e:
        raise ConfigError(f"{e} — it wrote {answer[:120]!r}") from None
    return Layout(layout.objects, sentence.strip())
