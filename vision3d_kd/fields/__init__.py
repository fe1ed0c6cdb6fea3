"""Radiance fields: encoder -> density head -> colour head (the split Progressive Volume Distillation
matches), one module per family with its `*Config` dataclass beside it, and a small name -> class table."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import DEFAULT_AABB, ColorHeadConfig, Field, FieldConfig
from .blob import BlobConfig, BlobField
from .grid import VoxelGridConfig, VoxelGridField
from .hashgrid import HashGridConfig, HashGridField
from .mlp import MLPConfig, MLPField
from .splats import GaussianSplats, SplatsConfig
from .tensorf import TensoRFConfig, TensoRFCP, TensoRFCPConfig, TensoRFVM

__all__ = [
    "Field",
    "FIELDS",
    "build_field",
    "DEFAULT_AABB",
    "MLPField",
    "HashGridField",
    "TensoRFVM",
    "TensoRFCP",
    "VoxelGridField",
    "GaussianSplats",
    "BlobField",
    "FieldConfig",
    "ColorHeadConfig",
    "MLPConfig",
    "HashGridConfig",
    "TensoRFConfig",
    "TensoRFCPConfig",
    "VoxelGridConfig",
    "SplatsConfig",
    "BlobConfig",
    "MODELS",
    "WRAPPERS",
]

FIELDS: dict[str, type[Field]] = {
    cls.name: cls for cls in (MLPField, HashGridField, TensoRFVM, TensoRFCP, VoxelGridField)
}


# Everything `fit` can train: the radiance fields plus Gaussian splats (not a Field: no density head).
MODELS: dict[str, type] = {**FIELDS, GaussianSplats.name: GaussianSplats}
# Wrappers a run can also hold (built by other commands): the text-to-3D field of `generate`.
WRAPPERS: dict[str, type] = {BlobField.name: BlobField}


def build_field(cfg: dict[str, Any]) -> Field:
    """Field from a config {"field": name, "aabb": [[...], [...]], **options} (as `Field.to_dict`).

    Raises ConfigError for a missing/unknown name, an unknown option or a bad value.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"field config must be a mapping, got {type(cfg).__name__}")
    name = cfg.get("field")
    known = {**MODELS, **WRAPPERS}
    if name not in known:
        raise ConfigError(f"unknown field {name!r}; choose one of {', '.join(MODELS)}")
    return known[name].from_dict(cfg)
