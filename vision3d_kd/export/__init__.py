"""Exports of any run: meshes (GLB/OBJ/PLY), point clouds, splat files, videos.

The splat file codecs (3DGS PLY, .splat, .spz) live in `data/splat_io.py`, since import reads them too;
they are re-exported here."""

from ..data.splat_io import (
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
