"""Export / import of 3D representations (Gaussian splats: 3DGS PLY, .splat, .spz)."""

from .splat_io import (
    FORMATS,
    SH_C0,
    ply_property_names,
    read_ply,
    read_splat,
    read_splats,
    read_spz,
    validate_params,
    write_ply,
    write_splat,
    write_splats,
    write_spz,
)

__all__ = [
    "FORMATS",
    "SH_C0",
    "ply_property_names",
    "read_ply",
    "read_splat",
    "read_splats",
    "read_spz",
    "validate_params",
    "write_ply",
    "write_splat",
    "write_splats",
    "write_spz",
]
