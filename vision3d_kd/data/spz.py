"""Byte codec for Niantic Labs' ``.spz`` Gaussian-splat format (legacy gzip layout, versions 1-3).

Layout, as documented in github.com/nianticlabs/spz (README "File Format" and ``src/cc/load-spz.cc``):
the whole stream (header included) is gzip-compressed. It starts with a 16-byte little-endian header
``magic u32 = 0x5053474e ("NGSP"), version u32, numPoints u32, shDegree u8, fractionalBits u8,
flags u8 (0x1 antialiased, 0x2 extension records follow the data), reserved u8``, followed by one
block per attribute, each point-major, in this order:

- positions: 3 x 24-bit signed fixed point (``round(p * 2**fractionalBits)``, 3 little-endian bytes
  each); version 1 used 3 x float16 instead (read only);
- alphas: ``round(sigmoid(logit) * 255)``;
- colours: ``round(sh_dc * 0.15 * 255 + 127.5)`` per channel (0.15 is the format's ``colorScale``);
- scales: ``round((log_scale + 10) * 16)`` per axis;
- rotations (the unit quaternion in xyzw order): version 3 packs the "smallest three" into a
  little-endian u32: bits 30-31 hold the index of the largest-magnitude component (made positive,
  not stored), then per other component (in increasing index order, first one in the highest bits)
  a sign bit and a 9-bit magnitude ``|q_i| / sqrt(1/2) * 511``; versions 1-2 store
  ``round(q_xyz * 127.5 + 127.5)`` with the sign chosen so that w >= 0 (w rebuilt from unit norm);
- SH rest coefficients: ``round(c * 128) + 128`` snapped to buckets of ``2**(8 - bits)`` (5 bits for
  band 1, 4 bits for bands 2+), coefficient-major with the colour channel innermost.

Values are clamped to [0, 255] (``uint8``). Version 4 (ZSTD streams) is not implemented.

Frame: spz stores RUB coordinates (x right, y up, z back; OpenGL / three.js). ``up="+z"`` (default)
says our world is the Blender-style z-up right-handed frame used by this package's scenes (x right,
y forward, z up; spz's ``RFU``): it is rotated by -90 degrees about x on the way out, ``(x, y, z) ->
(x, z, -y)``, with quaternions pre-multiplied by that rotation and SH coefficients rotated band by
band (and inversely on the way in). ``up="+y"`` says the world is already y-up RUB: no conversion.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import torch

from ..errors import DataError
from ..fields.encodings import sh_encoding

__all__ = ["MAGIC", "COLOR_SCALE", "encode_spz", "decode_spz", "frame_rotation", "rotate_arrays"]

MAGIC = 0x5053474E
COLOR_SCALE = 0.15
ALPHA_EPS = 1e-3  # decoded opacities are clamped to [eps, 1 - eps] before the logit
_HEADER = struct.Struct("<IIIBBBB")
_SQRT1_2 = float(np.sqrt(0.5))
_REST_DIM = {0: 0, 1: 3, 2: 8, 3: 15}  # SH coefficients beyond DC per channel
# Our z-up world (x right, y forward, z up) -> RUB: (x, y, z) -> (x, z, -y), a -90 degree turn about x.
_ZUP_TO_RUB = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_ZUP_TO_RUB_Q = np.array([_SQRT1_2, -_SQRT1_2, 0.0, 0.0])  # the same rotation, wxyz



def _round(x: np.ndarray) -> np.ndarray:
    """C's round(): halves away from zero (the reference encoder's rounding)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round(x), 0, 255).astype(np.uint8)


def _sh_basis(d: np.ndarray, degree: int) -> np.ndarray:
    """Real SH basis [M, (degree+1)^2] of unit directions d [M, 3] (the package's 3DGS-convention basis)."""
    return sh_encoding(torch.from_numpy(d).double(), degree + 1).numpy()


def _sh_rotation(rot: np.ndarray, degree: int) -> np.ndarray:
    """Matrix X [K, K] with sum_k (X c)_k Y_k(d) = sum_k c_k Y_k(rot^T d): SH coefficients of a world turned by rot."""
    d = np.random.default_rng(0).normal(size=(64, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    x = np.linalg.lstsq(_sh_basis(d, degree), _sh_basis(d @ rot, degree), rcond=None)[0]
    x[np.abs(x) < 1e-12] = 0.0
    return x


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of wxyz quaternions (broadcasting)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def frame_rotation(up: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(3x3 matrix, wxyz quaternion) taking our world frame to RUB, or None when ``up="+y"`` (identity)."""
    if up == "+y":
        return None
    if up == "+z":
        return _ZUP_TO_RUB, _ZUP_TO_RUB_Q
    raise ValueError(f"up must be '+z' (z-up world, converted to RUB) or '+y' (already RUB), got {up!r}")


def rotate_arrays(a: dict[str, np.ndarray], rot: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
    """Turn a whole splat cloud (float64 arrays) by rot (matrix) = q (wxyz): means, quats and SH."""
    out = dict(a)
    out["means"] = a["means"] @ rot.T
    out["quats"] = _quat_mul(q, a["quats"])
    degree = int(round(np.sqrt(a["sh"].shape[1]))) - 1
    if degree > 0:
        out["sh"] = np.einsum("jk,nkc->njc", _sh_rotation(rot, degree), a["sh"])
    return out


def _pack_smallest_three(q: np.ndarray) -> np.ndarray:
    """Unit xyzw quaternions [N, 4] -> little-endian u32 "smallest three" bytes [N, 4]."""
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(len(q)), largest] < 0
    comp = largest.astype(np.uint64)
    for i in range(4):
        neg = ((q[:, i] < 0) ^ negate).astype(np.uint64)
        mag = np.minimum(np.floor(511.0 * np.abs(q[:, i]) / _SQRT1_2 + 0.5), 511).astype(np.uint64)
        comp = np.where(largest != i, (comp << np.uint64(10)) | (neg << np.uint64(9)) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(-1, 4)


def _unpack_smallest_three(b: np.ndarray) -> np.ndarray:
    comp = b.reshape(-1, 4).copy().view("<u4")[:, 0].astype(np.int64)
    largest = comp >> 30
    q = np.zeros((len(comp), 4))
    for i in (3, 2, 1, 0):
        here = largest != i
        val = _SQRT1_2 * (comp & 511) / 511.0
        q[:, i] = np.where(here, np.where((comp >> 9) & 1, -val, val), 0.0)
        comp = np.where(here, comp >> 10, comp)
    q[np.arange(len(q)), largest] = np.sqrt(np.clip(1.0 - (q * q).sum(1), 0.0, None))
    return q


def encode_spz(a: dict[str, np.ndarray], *, version: int = 3, up: str = "+z", antialiased: bool = False,
               sh1_bits: int = 5, sh_rest_bits: int = 4) -> bytes:
    """Encode validated params (numpy, float) to the gzip-compressed bytes of an spz file.

    Positions use 12 fractional bits (about 0.24 mm at metre scale) unless a coordinate beyond +-2048 needs fewer.
    """
    if version not in (2, 3):
        raise ValueError(f"spz version must be 2 or 3, got {version}")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise ValueError(f"SH bits must be in 1..8, got {sh1_bits}, {sh_rest_bits}")
    a = {k: np.asarray(v, dtype=np.float64) for k, v in a.items()}
    turn = frame_rotation(up)
    if turn is not None:
        a = rotate_arrays(a, *turn)
    n, k = a["sh"].shape[:2]
    degree = int(round(np.sqrt(k))) - 1
    limit = 2**23 - 1
    extent = float(np.abs(a["means"]).max())
    frac = 12
    while frac > 0 and extent * 2**frac > limit:
        frac -= 1
    if extent * 2**frac > limit:
        raise ValueError(f"positions reach {extent:g}, beyond the 24-bit spz range (+-{limit})")
    fixed = _round(a["means"] * 2**frac).astype(np.int32)
    positions = ((fixed[..., None] >> np.array([0, 8, 16], dtype=np.int32)) & 0xFF).astype(np.uint8)
    alphas = _u8(255.0 / (1.0 + np.exp(-a["opacity_logits"])))
    colors = _u8(a["sh"][:, 0, :] * (COLOR_SCALE * 255.0) + 127.5)
    scales = _u8((a["log_scales"] + 10.0) * 16.0)
    q = a["quats"][:, [1, 2, 3, 0]]  # wxyz -> xyzw
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if version >= 3:
        rotations = _pack_smallest_three(q)
    else:
        rotations = _u8(q[:, :3] * np.where(q[:, 3:] < 0, -127.5, 127.5) + 127.5)
    rest = np.clip(_round(a["sh"][:, 1:, :] * 128.0) + 128.0, 0, 255).astype(np.int64)
    bucket = np.where(np.arange(k - 1) < 3, 1 << (8 - sh1_bits), 1 << (8 - sh_rest_bits))[None, :, None]
    rest = np.clip((rest + bucket // 2) // bucket * bucket, 0, 255).astype(np.uint8)
    header = _HEADER.pack(MAGIC, version, n, degree, frac, 1 if antialiased else 0, 0)
    body = b"".join(x.tobytes() for x in (positions, alphas, colors, scales, rotations, rest))
    return gzip.compress(header + body, compresslevel=6, mtime=0)


def decode_spz(data: bytes, name: str, *, up: str = "+z") -> dict[str, np.ndarray]:
    """Decode spz file bytes to float64 params arrays in our world frame; errors are DataError naming ``name``.

    Reads versions 1-3; the antialiased flag and any extension records (flag 0x2) are ignored.
    """
    turn = frame_rotation(up)
    if data[:4] == b"NGSP":
        raise DataError(f"{name}: spz version 4 (ZSTD streams) is not supported; re-save it as version 3")
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        msg = " ".join(str(e).split())
        raise DataError(f"{name}: not a valid gzip-compressed spz file ({msg})") from None
    if len(raw) < _HEADER.size:
        raise DataError(f"{name}: truncated spz header ({len(raw)} of {_HEADER.size} bytes)")
    magic, version, n, degree, frac, _flags, _ = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise DataError(f"{name}: bad spz magic 0x{magic:08x} (expected 0x{MAGIC:08x}, 'NGSP')")
    if version not in (1, 2, 3):
        raise DataError(f"{name}: unsupported spz version {version} (this reader handles 1-3)")
    if degree not in _REST_DIM:
        raise DataError(f"{name}: unsupported spz SH degree {degree} (0-3 supported)")
    if n == 0:
        raise DataError(f"{name}: spz file holds no splats")
    rest_dim = _REST_DIM[degree]
    sizes = [n * (6 if version == 1 else 9), n, 3 * n, 3 * n, n * (4 if version >= 3 else 3), n * rest_dim * 3]
    if len(raw) - _HEADER.size < sum(sizes):
        raise DataError(f"{name}: truncated spz data ({len(raw) - _HEADER.size} bytes after the header, "
                        f"{sum(sizes)} expected for {n} splats)")
    blocks, off = [], _HEADER.size
    for size in sizes:
        blocks.append(np.frombuffer(raw, np.uint8, size, off))
        off += size
    pos, alphas, colors, scales, rotations, rest = blocks
    if version == 1:
        means = pos.copy().view("<f2").reshape(n, 3).astype(np.float64)
    else:
        b = pos.reshape(n, 3, 3).astype(np.int32)
        v = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        means = np.where(v & 0x800000, v - (1 << 24), v) / float(2**frac)
    alpha = np.clip(alphas / 255.0, ALPHA_EPS, 1.0 - ALPHA_EPS)
    if version >= 3:
        q = _unpack_smallest_three(rotations)
    else:
        xyz = rotations.reshape(n, 3) / 127.5 - 1.0
        q = np.concatenate([xyz, np.sqrt(np.clip(1.0 - (xyz * xyz).sum(1, keepdims=True), 0.0, None))], axis=1)
    sh = np.empty((n, rest_dim + 1, 3))
    sh[:, 0, :] = (colors.reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE
    sh[:, 1:, :] = (rest.reshape(n, rest_dim, 3) - 128.0) / 128.0
    out = {
        "means": means,
        "log_scales": scales.reshape(n, 3) / 16.0 - 10.0,
        "quats": q[:, [3, 0, 1, 2]],  # xyzw -> wxyz
        "opacity_logits": np.log(alpha / (1.0 - alpha)),
        "sh": sh,
    }
    if turn is not None:
        out = rotate_arrays(out, turn[0].T, turn[1] * np.array([1.0, -1.0, -1.0, -1.0]))
    return out
