"""Read and write Gaussian-splat clouds: 3DGS PLY, antimatter15 ``.splat`` and Niantic ``.spz``.

``params`` is a ``dict[str, Tensor]`` of float32 CPU tensors (world units, our world frame):
``means`` [N,3] positions, ``log_scales`` [N,3] (scale = exp), ``quats`` [N,4] wxyz rotation (local ->
world, may be unnormalised), ``opacity_logits`` [N] (opacity = sigmoid), ``sh`` [N,K,3] with
K = (degree+1)^2, degree 0..3, ``sh[:, 0]`` the DC term (colour = 0.5 + C0 * sh_dc + ...).

Frames (`write_splats` / `read_splats`, `up`; see :mod:`vision3d_kd.data.axes`): each format is written in
the frame its viewers assume unless asked otherwise — 3DGS PLY and ``.splat`` in RDF (y down, the frame 3DGS
trains in; ``up="-y"``), ``.spz`` in RUB (y up, its specification; ``up="+y"``) — so that the three files
of one run open in the same orientation; ``up="+z"`` keeps our z-up world. The per-format readers and
writers below work in the file's own frame. Writes are atomic (temp file in the same directory, then
``os.replace``); malformed files raise :class:`~vision3d_kd.errors.DataError` with a one-line message
that starts with the path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import atomic_write
from ..errors import DataError
from ..fields.splats import SH_C0
from .axes import turn_splat_arrays, up_rotation
from .spz import ALPHA_EPS, decode_spz, encode_spz

__all__ = [
    "SH_C0",
    "FORMATS",
    "DEFAULT_UP",
    "validate_params",
    "ply_property_names",
    "write_splats",
    "read_splats",
    "write_ply",
    "read_ply",
    "read_ply_vertices",
    "write_splat",
    "read_splat",
    "write_spz",
    "read_spz",
]

FORMATS = {".ply": "3dgs-ply", ".splat": "splat", ".spz": "spz"}
DEFAULT_UP = {"3dgs-ply": "-y", "splat": "-y", "spz": "+y"}  # the frame each format's viewers assume
KEYS = ("means", "log_scales", "quats", "opacity_logits", "sh")
_REQUIRED_PLY = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                 "rot_0", "rot_1", "rot_2", "rot_3")
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_SPLAT_DTYPE = np.dtype([("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))])
PathLike = str | os.PathLike


def validate_params(params: Mapping[str, Tensor]) -> int:
    """Check keys, shapes and finiteness of splat params; return the SH degree. Raises ValueError."""
    missing = [k for k in KEYS if k not in params]
    if missing:
        raise ValueError(f"params missing keys: {', '.join(missing)}")
    for k in KEYS:
        if not isinstance(params[k], Tensor) or not params[k].is_floating_point():
            raise ValueError(f"params[{k!r}] must be a floating-point torch.Tensor")
    means = params["means"]
    if means.ndim != 2 or means.shape[1] != 3 or means.shape[0] == 0:
        raise ValueError(f"params['means'] must be [N,3] with N >= 1, got {tuple(means.shape)}")
    n = means.shape[0]
    for k, shape in (("log_scales", (n, 3)), ("quats", (n, 4)), ("opacity_logits", (n,))):
        if tuple(params[k].shape) != shape:
            raise ValueError(f"params[{k!r}] must be {list(shape)}, got {tuple(params[k].shape)}")
    sh = params["sh"]
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3 or sh.shape[1] not in (1, 4, 9, 16):
        raise ValueError(f"params['sh'] must be [N,K,3] with K in 1, 4, 9, 16, got {tuple(sh.shape)}")
    for k in KEYS:
        if not bool(torch.isfinite(params[k]).all()):
            raise ValueError(f"params[{k!r}] holds NaN or Inf")
    if bool((params["quats"].norm(dim=1) == 0).any()):
        raise ValueError("params['quats'] holds a zero quaternion")
    return int(round(sh.shape[1] ** 0.5)) - 1


def _numpy(params: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    return {k: params[k].detach().cpu().to(torch.float32).numpy() for k in KEYS}


def _to_params(path: PathLike, arrays: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    """float32 tensors from decoded arrays; DataError on NaN/Inf (also float32 overflow)."""
    out = {}
    for k in KEYS:
        a = np.ascontiguousarray(arrays[k], dtype=np.float32)
        if not np.isfinite(a).all():
            bad = int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0, 0])
            raise DataError(f"{path}: non-finite {k} value (splat {bad})")
        out[k] = torch.from_numpy(a)
    return out


def _write_array(f: BinaryIO, a: np.ndarray) -> None:
    f.write(np.ascontiguousarray(a).tobytes())


def _read_bytes(path: PathLike) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if not data:
        raise DataError(f"{path}: file is empty")
    return data


# ---------------------------------------------------------------------------------------------- 3DGS PLY


def ply_property_names(degree: int) -> list[str]:
    """Vertex properties of a 3DGS PLY in the graphdeco order (f_rest channel-major: index c*(K-1) + k-1)."""
    n_rest = 3 * ((degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_ply(params: Mapping[str, Tensor], path: PathLike) -> None:
    """Write a binary little-endian 3DGS PLY (float32; normals 0, opacity logit, log scales, wxyz quats)."""
    degree = validate_params(params)
    a = _numpy(params)
    n, k = a["sh"].shape[:2]
    rest = a["sh"][:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # channel-major
    table = np.concatenate([a["means"], np.zeros((n, 3), np.float32), a["sh"][:, 0, :], rest,
                            a["opacity_logits"][:, None], a["log_scales"], a["quats"]], axis=1).astype("<f4")
    props = "".join(f"property float {p}\n" for p in ply_property_names(degree))
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n{props}end_header\n".encode("ascii")

    def write(f: BinaryIO) -> None:
        f.write(header)
        _write_array(f, table)

    atomic_write(path, write)


def _parse_ply_header(path: PathLike, text: str) -> tuple[str, list[tuple[str, int, list[tuple[str, str | None]]]]]:
    """(format, [(element, count, [(property, numpy type or None for lists)])]) from the header text."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "ply":
        raise DataError(f"{path}: not a PLY file (first line is not 'ply')")
    fmt, elements = None, []
    for line in lines[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        ok = True
        if tok[0] == "format":
            ok = len(tok) == 3 and tok[1] in ("ascii", "binary_little_endian", "binary_big_endian")
            fmt = tok[1] if ok else None
        elif tok[0] == "element":
            ok = len(tok) == 3 and tok[2].isdigit()
            if ok:
                elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property" and elements:
            if tok[1:2] == ["list"]:
                ok = len(tok) == 5 and tok[2] in _PLY_TYPES and tok[3] in _PLY_TYPES
                elements[-1][2].append((tok[-1], None))
            else:
                ok = len(tok) == 3 and tok[1] in _PLY_TYPES
                elements[-1][2].append((tok[-1], _PLY_TYPES.get(tok[1])))
        else:
            ok = False
        if not ok:
            raise DataError(f"{path}: bad PLY header line {line.strip()!r}")
    if fmt is None:
        raise DataError(f"{path}: PLY header has no format line")
    return fmt, elements


def read_ply_vertices(path: PathLike) -> dict[str, np.ndarray]:
    """Columns of a PLY's `vertex` element by property name (binary or ascii, scalar properties)."""
    data = _read_bytes(path)
    if not data.startswith(b"ply"):
        raise DataError(f"{path}: not a PLY file (no 'ply' magic)")
    end = re.search(rb"end_header[ \t]*\r?\n", data)
    if end is None:
        raise DataError(f"{path}: PLY header has no end_header line")
    fmt, elements = _parse_ply_header(path, data[: end.start()].decode("latin-1"))
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise DataError(f"{path}: PLY has no 'vertex' element")
    vi = names.index("vertex")
    _, n, props = elements[vi]
    pnames = [p for p, _ in props]
    if len(set(pnames)) != len(pnames):
        raise DataError(f"{path}: duplicate PLY vertex properties")
    if any(t is None for _, t in props) or (fmt != "ascii" and any(t is None for e in elements[:vi] for _, t in e[2])):
        raise DataError(f"{path}: list properties in or before the PLY vertex element are not supported")
    if n == 0:
        raise DataError(f"{path}: PLY has no vertices")
    body = data[end.end():]
    if fmt == "ascii":
        rows = [ln for ln in body.decode("latin-1").splitlines() if ln.strip()]
        skip = sum(e[1] for e in elements[:vi])
        tokens = " ".join(rows[skip : skip + n]).split()
        if len(rows) < skip + n or len(tokens) != n * len(props):
            raise DataError(f"{path}: truncated or malformed ascii PLY vertex data")
        try:
            table = np.array(tokens, dtype=np.float64).reshape(n, len(props))
        except ValueError:
            raise DataError(f"{path}: non-numeric value in ascii PLY vertex data") from None
        cols = {p: table[:, i] for i, p in enumerate(pnames)}
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        offset = sum(e[1] * sum(np.dtype(t).itemsize for _, t in e[2]) for e in elements[:vi])
        dtype = np.dtype([(p, endian + t) for p, t in props])
        if len(body) < offset + n * dtype.itemsize:
            raise DataError(f"{path}: truncated PLY data ({len(body)} bytes after the header, "
                            f"{offset + n * dtype.itemsize} needed for {n} vertices)")
        arr = np.frombuffer(body, dtype, n, offset)
        cols = {p: arr[p] for p in pnames}
    return cols


def read_ply(path: PathLike) -> dict[str, Tensor]:
    """Read a 3DGS PLY (binary or ascii, any property order/type, extra properties ignored)."""
    cols = read_ply_vertices(path)
    n = len(cols["x"]) if "x" in cols else len(next(iter(cols.values())))
    missing = [p for p in _REQUIRED_PLY if p not in cols]
    if missing:
        raise DataError(f"{path}: missing PLY properties: {', '.join(missing)}")
    rest_idx = sorted(int(m.group(1)) for p in cols if (m := re.fullmatch(r"f_rest_(\d+)", p)))
    if rest_idx != list(range(len(rest_idx))) or len(rest_idx) not in (0, 9, 24, 45):
        raise DataError(f"{path}: {len(rest_idx)} f_rest properties (need 0, 9, 24 or 45, numbered from 0)")
    for p in list(_REQUIRED_PLY) + [f"f_rest_{i}" for i in rest_idx]:
        col = np.asarray(cols[p], dtype=np.float32)
        if not np.isfinite(col).all():
            raise DataError(f"{path}: non-finite value in PLY property {p} (vertex {int(np.argmin(np.isfinite(col)))})")

    def stack(ps: list[str]) -> np.ndarray:
        if not ps:
            return np.zeros((n, 0), np.float32)
        return np.stack([np.asarray(cols[p], dtype=np.float32) for p in ps], axis=1)

    m = len(rest_idx) // 3
    sh = np.concatenate([stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
                         stack([f"f_rest_{i}" for i in rest_idx]).reshape(n, 3, m).transpose(0, 2, 1)], axis=1)
    arrays = {"means": stack(["x", "y", "z"]), "log_scales": stack(["scale_0", "scale_1", "scale_2"]),
              "quats": stack(["rot_0", "rot_1", "rot_2", "rot_3"]), "opacity_logits": stack(["opacity"])[:, 0],
              "sh": sh}
    return _to_params(path, arrays)


# ---------------------------------------------------------------------------------------------- .splat


def splat_order(params: Mapping[str, Tensor]) -> np.ndarray:
    """Indices sorting splats by descending exp(sum log_scales) * opacity (the antimatter15 writer's order)."""
    a = _numpy(params)
    key = a["log_scales"].astype(np.float64).sum(1) - np.logaddexp(0.0, -a["opacity_logits"].astype(np.float64))
    return np.argsort(-key, kind="stable")


def write_splat(params: Mapping[str, Tensor], path: PathLike) -> None:
    """Write an antimatter15 ``.splat``: 32 bytes per splat (position, exp scale, RGBA u8, wxyz quat u8).

    Only the SH DC colour survives; splats are sorted by descending volume x opacity.
    """
    validate_params(params)
    a = {k: v[splat_order(params)].astype(np.float64) for k, v in _numpy(params).items()}
    rec = np.zeros(len(a["means"]), _SPLAT_DTYPE)
    rec["pos"] = a["means"]
    rec["scale"] = np.exp(a["log_scales"])
    if not np.isfinite(rec["scale"]).all():
        raise ValueError("params['log_scales'] overflow float32 once exponentiated")
    rgb = np.clip(0.5 + SH_C0 * a["sh"][:, 0, :], 0.0, 1.0) * 255.0
    alpha = 255.0 / (1.0 + np.exp(-a["opacity_logits"]))
    rec["rgba"] = np.clip(np.rint(np.concatenate([rgb, alpha[:, None]], axis=1)), 0, 255)
    # Normalise only quaternions visibly off the unit sphere: ones read back from a .splat are
    # within 8-bit rounding of unit length and stay as they are, so writing them again gives the
    # same bytes (a second export -> import round trip renders identically).
    norm = np.linalg.norm(a["quats"], axis=1, keepdims=True)
    q = np.where(np.abs(norm - 1.0) > 0.02, a["quats"] / norm, a["quats"])
    rec["rot"] = np.clip(np.rint(q * 128.0 + 128.0), 0, 255)
    atomic_write(path, lambda f: _write_array(f, rec))


def read_splat(path: PathLike) -> dict[str, Tensor]:
    """Read a ``.splat`` file (degree-0 SH; opacities clamped to [1e-3, 1 - 1e-3] before the logit)."""
    data = _read_bytes(path)
    if len(data) % _SPLAT_DTYPE.itemsize:
        raise DataError(f"{path}: size {len(data)} bytes is not a multiple of 32 (truncated .splat file?)")
    rec = np.frombuffer(data, _SPLAT_DTYPE)
    scale = rec["scale"].astype(np.float64)
    bad = ~(np.isfinite(scale) & (scale > 0)).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: non-positive or non-finite scale (splat {int(np.argmax(bad))})")
    rgba = rec["rgba"] / 255.0
    alpha = np.clip(rgba[:, 3], ALPHA_EPS, 1.0 - ALPHA_EPS)
    arrays = {"means": rec["pos"], "log_scales": np.log(scale), "quats": (rec["rot"] - 128.0) / 128.0,
              "opacity_logits": np.log(alpha / (1.0 - alpha)), "sh": ((rgba[:, :3] - 0.5) / SH_C0)[:, None, :]}
    return _to_params(path, arrays)


# ---------------------------------------------------------------------------------------------- .spz


def write_spz(params: Mapping[str, Tensor], path: PathLike, *, version: int = 2, antialiased: bool = False,
              sh1_bits: int = 5, sh_rest_bits: int = 4) -> None:
    """Write an ``.spz`` file (version 2 by default: every viewer tried opens it; 3 packs rotations more
    finely; 4 is ZSTD streams) of params in the file's frame."""
    validate_params(params)
    blob = encode_spz(_numpy(params), version=version, antialiased=antialiased, sh1_bits=sh1_bits,
                      sh_rest_bits=sh_rest_bits)
    atomic_write(path, lambda f: _write_array(f, np.frombuffer(blob, np.uint8)))


def read_spz(path: PathLike) -> dict[str, Tensor]:
    """Read an ``.spz`` file (versions 1-4) in the file's frame."""
    return _to_params(path, decode_spz(_read_bytes(path), str(path)))


# ---------------------------------------------------------------------------------------------- dispatch

_WRITERS = {"3dgs-ply": write_ply, "splat": write_splat, "spz": write_spz}
_READERS = {"3dgs-ply": read_ply, "splat": read_splat, "spz": read_spz}


def _format(path: PathLike, fmt: str | None, reading: bool) -> str:
    if fmt is None:
        fmt = FORMATS.get(Path(path).suffix.lower())
        if fmt is None:
            msg = f"{path}: unknown splat file suffix (use .ply, .splat or .spz, or pass fmt)"
            raise DataError(msg) if reading else ValueError(msg)
    fmt = {"ply": "3dgs-ply"}.get(fmt, fmt)
    if fmt not in _WRITERS:
        raise ValueError(f"unknown splat format {fmt!r} (expected one of {', '.join(_WRITERS)})")
    return fmt


def _turned(params: Mapping[str, Tensor], rot: np.ndarray) -> dict[str, Tensor]:
    """Params (float32 tensors) turned as a whole by the rotation `rot` (see `data.axes.turn_splat_arrays`)."""
    if np.allclose(rot, np.eye(3)):
        return dict(params)
    arrays = turn_splat_arrays({k: v.detach().cpu().double().numpy() for k, v in params.items()}, rot)
    return {k: torch.from_numpy(np.ascontiguousarray(v)).float() for k, v in arrays.items()}


def write_splats(params: Mapping[str, Tensor], path: PathLike, fmt: str | None = None, up: str | None = None,
                 **options) -> None:
    """Write params (our z-up world) as ``fmt`` ("3dgs-ply", "splat" or "spz"; default from the suffix)
    atomically, turned so that the file's axis `up` points up (default `DEFAULT_UP[fmt]`).

    ``options`` go to the format's writer (e.g. ``version`` for spz).
    """
    fmt = _format(path, fmt, reading=False)
    validate_params(params)
    _WRITERS[fmt](_turned(params, up_rotation(up or DEFAULT_UP[fmt])), path, **options)


def read_splats(path: PathLike, fmt: str | None = None, up: str | None = None) -> dict[str, Tensor]:
    """Read a splat file as params (float32 CPU tensors) in our z-up world, the file's axis `up` (default
    `DEFAULT_UP[fmt]`) taken as up; ``fmt`` defaults from the suffix."""
    fmt = _format(path, fmt, reading=True)
    rot = up_rotation(up or DEFAULT_UP[fmt])
    return _turned(_READERS[fmt](path), rot.T)
