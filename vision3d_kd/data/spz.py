"""Byte codec for Niantic Labs' ``.spz`` Gaussian-splat format: versions 1-3 (one gzip stream) and 4
(ZSTD streams).

Layout, as documented in github.com/nianticlabs/spz (README "File Format"): versions 1-3 gzip the whole
stream, a 16-byte little-endian header ``magic u32 = 0x5053474e ("NGSP"), version u32, numPoints u32,
shDegree u8, fractionalBits u8, flags u8 (0x1 antialiased, 0x2 extension records), reserved u8`` and the
attribute blocks below, one after the other. Version 4 starts with a plaintext 32-byte header ``magic,
version, numPoints u32, shDegree, fractionalBits, flags, numStreams u8, tocByteOffset u32, 12 reserved
bytes``, (extension records up to tocByteOffset,) a table of ``numStreams x [compressed u64,
uncompressed u64]`` sizes, then each attribute block as its own ZSTD frame. Blocks, point-major, in order:

- positions: 3 x 24-bit signed fixed point (``round(p * 2**fractionalBits)``, 3 little-endian bytes
  each); version 1 used 3 x float16 instead (read only);
- alphas: ``round(sigmoid(logit) * 255)``;
- colours: ``round(sh_dc * 0.15 * 255 + 127.5)`` per channel (0.15 is the format's ``colorScale``);
- scales: ``round((log_scale + 10) * 16)`` per axis;
- rotations (the unit quaternion in xyzw order): versions 3-4 pack the "smallest three" into a
  little-endian u32: bits 30-31 hold the index of the largest-magnitude component (made positive,
  not stored), then per other component (in increasing index order, first one in the highest bits)
  a sign bit and a 9-bit magnitude ``|q_i| / sqrt(1/2) * 511``; versions 1-2 store
  ``round(q_xyz * 127.5 + 127.5)`` with the sign chosen so that w >= 0 (w rebuilt from unit norm);
- SH rest coefficients: ``round(c * 128) + 128`` snapped to buckets of ``2**(8 - bits)`` (5 bits for
  band 1, 4 bits for bands 2+), coefficient-major with the colour channel innermost.

Values are clamped to [0, 255] (``uint8``). The codec works in the file's own frame; turning our world
into spz's RUB is the caller's (`data.axes`, `data.splat_io`).
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

from ..errors import DataError

__all__ = ["MAGIC", "COLOR_SCALE", "VERSIONS", "encode_spz", "decode_spz"]

MAGIC = 0x5053474E
COLOR_SCALE = 0.15
VERSIONS = (2, 3, 4)  # written; 1 is read too
ALPHA_EPS = 1e-3  # decoded opacities are clamped to [eps, 1 - eps] before the logit
_HEADER = struct.Struct("<IIIBBBB")
_HEADER4 = struct.Struct("<IIIBBBBI12x")
_TOC = struct.Struct("<QQ")
_SQRT1_2 = float(np.sqrt(0.5))
_REST_DIM = {0: 0, 1: 3, 2: 8, 3: 15}  # SH coefficients beyond DC per channel


def _round(x: np.ndarray) -> np.ndarray:
    """C's round(): halves away from zero (the reference encoder's rounding)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round(x), 0, 255).astype(np.uint8)


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


def _blocks(a: dict[str, np.ndarray], version: int, sh1_bits: int, sh_rest_bits: int) -> tuple[int, list[bytes]]:
    """(fractional bits, the six attribute blocks) of float64 params in the file's frame."""
    k = a["sh"].shape[1]
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
    return frac, [x.tobytes() for x in (positions, alphas, colors, scales, rotations, rest)]


def encode_spz(a: dict[str, np.ndarray], *, version: int = 2, antialiased: bool = False,
               sh1_bits: int = 5, sh_rest_bits: int = 4) -> bytes:
    """The bytes of an spz file (`version` 2, 3 or 4) of params (numpy, float) already in the file's frame.

    Positions use 12 fractional bits (about 0.24 mm at metre scale) unless a coordinate beyond +-2048 needs fewer.
    """
    if version not in VERSIONS:
        raise ValueError(f"spz version must be one of {', '.join(map(str, VERSIONS))}, got {version}")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise ValueError(f"SH bits must be in 1..8, got {sh1_bits}, {sh_rest_bits}")
    a = {k: np.asarray(v, dtype=np.float64) for k, v in a.items()}
    n, k = a["sh"].shape[:2]
    degree = int(round(np.sqrt(k))) - 1
    frac, blocks = _blocks(a, version, sh1_bits, sh_rest_bits)
    flags = 1 if antialiased else 0
    if version < 4:
        header = _HEADER.pack(MAGIC, version, n, degree, frac, flags, 0)
        return gzip.compress(header + b"".join(blocks), compresslevel=6, mtime=0)
    import zstandard

    packer = zstandard.ZstdCompressor(level=12)
    frames = [packer.compress(b) for b in blocks]
    toc = b"".join(_TOC.pack(len(f), len(b)) for f, b in zip(frames, blocks, strict=True))
    return _HEADER4.pack(MAGIC, 4, n, degree, frac, flags, len(frames), _HEADER4.size) + toc + b"".join(frames)


def _sizes(n: int, degree: int, version: int) -> list[int]:
    """Byte sizes of the six attribute blocks."""
    return [n * (6 if version == 1 else 9), n, 3 * n, 3 * n, n * (4 if version >= 3 else 3), n * _REST_DIM[degree] * 3]


def _check_header(name: str, magic: int, version: int, n: int, degree: int) -> None:
    if magic != MAGIC:
        raise DataError(f"{name}: bad spz magic 0x{magic:08x} (expected 0x{MAGIC:08x}, 'NGSP')")
    if version not in (1, 2, 3, 4):
        raise DataError(f"{name}: unsupported spz version {version} (this reader handles 1-4)")
    if degree not in _REST_DIM:
        raise DataError(f"{name}: unsupported spz SH degree {degree} (0-3 supported)")
    if n == 0:
        raise DataError(f"{name}: spz file holds no splats")


def _legacy_blocks(data: bytes, name: str) -> tuple[int, int, int, int, list[bytes]]:
    """(version, n, degree, fractional bits, blocks) of a gzip spz file (versions 1-3)."""
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        msg = " ".join(str(e).split())
        raise DataError(f"{name}: not a valid gzip-compressed spz file ({msg})") from None
    if len(raw) < _HEADER.size:
        raise DataError(f"{name}: truncated spz header ({len(raw)} of {_HEADER.size} bytes)")
    magic, version, n, degree, frac, _flags, _ = _HEADER.unpack_from(raw)
    if version == 4:
        raise DataError(f"{name}: spz version 4 inside a gzip stream (version 4 files are not gzipped)")
    _check_header(name, magic, version, n, degree)
    sizes = _sizes(n, degree, version)
    if len(raw) - _HEADER.size < sum(sizes):
        raise DataError(f"{name}: truncated spz data ({len(raw) - _HEADER.size} bytes after the header, "
                        f"{sum(sizes)} expected for {n} splats)")
    offsets = np.cumsum([_HEADER.size, *sizes])
    return version, n, degree, frac, [raw[o:o + size] for o, size in zip(offsets[:-1], sizes, strict=True)]


def _zstd_blocks(data: bytes, name: str) -> tuple[int, int, int, int, list[bytes]]:
    """(version, n, degree, fractional bits, blocks) of a version-4 spz file (ZSTD streams)."""
    import zstandard

    if len(data) < _HEADER4.size:
        raise DataError(f"{name}: truncated spz header ({len(data)} of {_HEADER4.size} bytes)")
    magic, version, n, degree, frac, _flags, streams, toc = _HEADER4.unpack_from(data)
    _check_header(name, magic, version, n, degree)
    if version != 4:
        raise DataError(f"{name}: spz version {version} with a plaintext header (only version 4 has one)")
    sizes = _sizes(n, degree, version)
    if streams < 5 or streams > 6 or (streams == 5 and sizes[5]) or toc < _HEADER4.size:
        raise DataError(f"{name}: spz version 4 with {streams} streams at byte {toc} (6 expected)")
    end = toc + streams * _TOC.size
    if len(data) < end:
        raise DataError(f"{name}: truncated spz table of streams ({len(data)} bytes, {end} needed)")
    table = [_TOC.unpack_from(data, toc + i * _TOC.size) for i in range(streams)]
    blocks, off = [], end
    for i, ((packed, size), want) in enumerate(zip(table, sizes[:streams], strict=True)):
        if size != want or off + packed > len(data):
            raise DataError(f"{name}: spz stream {i} is {size} bytes ({want} expected) or truncated")
        try:
            block = zstandard.ZstdDecompressor().decompress(data[off:off + packed], max_output_size=size)
        except zstandard.ZstdError as e:
            raise DataError(f"{name}: spz stream {i} is not valid ZSTD data ({e})") from None
        if len(block) != size:
            raise DataError(f"{name}: spz stream {i} holds {len(block)} bytes, {size} expected")
        blocks.append(block)
        off += packed
    return version, n, degree, frac, blocks + [b""] * (6 - streams)


def decode_spz(data: bytes, name: str) -> dict[str, np.ndarray]:
    """Decode spz file bytes (versions 1-4) to float64 params arrays in the file's own frame; errors are
    DataError naming ``name``. The antialiased flag and any extension records are ignored."""
    reader = _zstd_blocks if data[:4] == b"NGSP" else _legacy_blocks
    version, n, degree, frac, raw = reader(data, name)
    pos, alphas, colors, scales, rotations, rest = (np.frombuffer(b, np.uint8) for b in raw)
    rest_dim = _REST_DIM[degree]
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
    return {
        "means": means,
        "log_scales": scales.reshape(n, 3) / 16.0 - 10.0,
        "quats": q[:, [3, 0, 1, 2]],  # xyzw -> wxyz
        "opacity_logits": np.log(alpha / (1.0 - alpha)),
        "sh": sh,
    }
