"""Fused CPU hot loops (C++/OpenMP, built on first use), each beside a plain-PyTorch reference.

Public functions take the fused path for float32 CPU tensors when the extension builds, and the
reference otherwise (CUDA tensors, float64, ``V3KD_NO_EXT=1``).
"""

from __future__ import annotations

from .build import load_extension
from .composite import composite, composite_weights
from .composite_ref import composite_ref, composite_weights_ref
from .dispatch import fused_available
from .grid import sample_lines, sample_planes, sample_volume
from .grid_ref import sample_lines_ref, sample_planes_ref, sample_volume_ref
from .hash import hash_encode
from .hash_ref import hash_encode_ref

__all__ = [
    "hash_encode",
    "sample_volume",
    "sample_planes",
    "sample_lines",
    "composite",
    "composite_weights",
    "load_extension",
    "fused_available",
    "hash_encode_ref",
    "sample_volume_ref",
    "sample_planes_ref",
    "sample_lines_ref",
    "composite_ref",
    "composite_weights_ref",
]
