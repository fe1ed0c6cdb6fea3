"""A local diffusers pipeline directory on disk: which components `model_index.json` lists, whether each
has its files (plain, `fp16`-variant or sharded weights), and loading one component in a chosen dtype —
picking the `fp16` variant files the way diffusers' own `from_pretrained` would need them named."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, DataError

__all__ = ["pipeline_components", "pipeline_index", "weight_variant", "load_component", "DTYPES", "parse_dtype"]

REQUIRED = ("unet", "scheduler", "text_encoder", "tokenizer")
MODELS = ("unet", "vae", "text_encoder", "text_encoder_2")  # components that must hold weights
OPTIONAL = ("safety_checker", "feature_extractor", "watermarker", "image_encoder")
# diffusion_pytorch_model / model / pytorch_model [.VARIANT] .safetensors|.bin, whole or a shard index
_SHARD = r"-\d{5}-of-\d{5}"
_WEIGHT = re.compile(rf"^(diffusion_pytorch_model|model|pytorch_model)(?P<s1>{_SHARD})?"
                     rf"(\.(?P<variant>[^.\-]+)(?P<s2>{_SHARD})?)?\.(safetensors|bin)"
                     r"(?P<index>\.index(\.(?P<ivariant>[^.]+))?\.json)?$")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_dtype(name: str) -> torch.dtype:
    """torch dtype of a `--dtype` name (fp32, fp16 or bf16); ConfigError for any other name."""
    if name not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _weight_files(folder: Path) -> dict[str | None, list[str]]:
    """{variant or None: [file names]} of the weight files (whole or shard indices) in a component folder."""
    out: dict[str | None, list[str]] = {}
    for f in folder.iterdir() if folder.is_dir() else []:
        m = _WEIGHT.match(f.name)
        if m is None or ((m["s1"] or m["s2"]) and not m["index"]):  # a shard counts through its index
            continue
        out.setdefault(m["variant"] or m["ivariant"], []).append(f.name)
    return out


def pipeline_index(path: Path) -> dict[str, Any]:
    """The parsed `model_index.json` of a pipeline directory (DataError if missing or invalid)."""
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
    if not isinstance(raw, dict):
        raise DataError(f"{index}: not a JSON object")
    return raw


def pipeline_components(path: Path, index: dict[str, Any] | None = None) -> dict[str, tuple[str, str]]:
    """{component: (library, class)} of a pipeline directory, checked: model_index.json exists, the four
    required components are listed, and every listed component has its folder (and weights, plain, `fp16`
    or sharded, for the networks). Raises DataError naming the first problem. index: the parsed
    model_index.json when the caller has read it already."""
    raw = pipeline_index(path) if index is None else index
    comps = {k: tuple(v) for k, v in raw.items()
             if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None}
    for name in REQUIRED:
        if name not in comps:
            raise DataError(f"{path}: model_index.json lists no {name!r} component")
    for name, (_, cls) in comps.items():
        if name in OPTIONAL:
            continue
        folder = Path(path) / name
        if not folder.is_dir():
            raise DataError(f"{path}: component {name!r} ({cls}) is missing: no {name}/ folder")
        if name in MODELS and not _weight_files(folder):
            raise DataError(f"{path}: component {name!r} has no weights in {name}/")
    return comps


def weight_variant(folder: Path, dtype: torch.dtype) -> str | None:
    """The `variant` to load a component folder with: "fp16" when it holds fp16 files and either has no plain
    ones or the compute dtype is 16-bit; None (plain files) otherwise."""
    files = _weight_files(folder)
    if "fp16" in files and (None not in files or dtype in (torch.float16, torch.bfloat16)):
        return "fp16"
    return None


def load_component(path: Path, name: str, lib: str, cls: str, dtype: torch.dtype | None) -> Any:
    """One component of the pipeline at `path`, its weights (if any) loaded straight into `dtype`."""
    import diffusers
    import transformers

    module = {"diffusers": diffusers, "transformers": transformers}.get(lib)
    if module is None or not hasattr(module, cls):
        raise DataError(f"{path}: component {name!r} has unknown class {lib}.{cls}")
    kwargs: dict[str, Any] = {}
    if name in MODELS and dtype is not None:
        variant = weight_variant(Path(path) / name, dtype)
        kwargs = {"torch_dtype" if lib == "diffusers" else "dtype": dtype, **({"variant": variant} if variant else {})}
    try:
        return getattr(module, cls).from_pretrained(Path(path) / name, **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise DataError(f"{path}: cannot load {name!r} ({type(e).__name__}: {str(e)[:200]})") from None
