"""Gaussian-splat file I/O: 3DGS PLY layout, .splat and .spz round trips, hand-made spz bytes, bad inputs, atomicity."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vision3d_kd.data.splat_io import (
    read_ply,
    read_splats,
    read_spz,
    write_ply,
    write_splats,
)
from vision3d_kd.errors import DataError

C0 = 0.28209479177387814
BAD_INPUTS = Path(__file__).resolve().parents[1].parent / "shared/data/bad_inputs"


def make_params(n: int = 40, degree: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    sh = (torch.rand(n, k, 3, generator=g) - 0.5) * 0.6  # rest coefficients in [-0.3, 0.3]
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) * 4.0  # DC in [-2, 2]
    return {
        "means": (torch.rand(n, 3, generator=g) - 0.5) * 8.0,
        "log_scales": torch.rand(n, 3, generator=g) * 5.0 - 5.0,
        "quats": torch.randn(n, 4, generator=g),
        "opacity_logits": torch.randn(n, generator=g) * 2.0,
        "sh": sh,
    }


def unit_wxyz(q: torch.Tensor) -> torch.Tensor:
    return q / q.norm(dim=1, keepdim=True)


def same_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|<a, b>| of normalised quaternions (1 when they are the same rotation)."""
    return (unit_wxyz(a) * unit_wxyz(b)).sum(1).abs()


def expected_ply_names(degree: int) -> list[str]:
    n_rest = 3 * ((degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


# ------------------------------------------------------------------------------------------------ PLY


@pytest.mark.parametrize("degree", [0, 3])
def test_ply_layout_matches_3dgs(tmp_path, degree):
    plyfile = pytest.importorskip("plyfile")
    p = make_params(n=23, degree=degree)
    path = tmp_path / "cloud.ply"
    write_ply(p, path)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 23\n")
    ply = plyfile.PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    v = ply["vertex"]
    assert v.count == 23
    assert [prop.name for prop in v.properties] == expected_ply_names(degree)
    assert all(v.data.dtype[name] == np.dtype("<f4") for name in v.data.dtype.names)
    for i, axis in enumerate("xyz"):
        np.testing.assert_array_equal(v[axis], p["means"][:, i].numpy())
        np.testing.assert_array_equal(v[f"n{axis}"], 0.0)
    for c in range(3):
        np.testing.assert_array_equal(v[f"f_dc_{c}"], p["sh"][:, 0, c].numpy())
        np.testing.assert_array_equal(v[f"scale_{c}"], p["log_scales"][:, c].numpy())
    for j in range(4):
        np.testing.assert_array_equal(v[f"rot_{j}"], p["quats"][:, j].numpy())  # wxyz as stored
    np.testing.assert_array_equal(v["opacity"], p["opacity_logits"].numpy())
    if degree == 3:
        # channel-major: f_rest index = c * 15 + (k - 1); G channel (c=1) of coefficient k=3 -> f_rest_17
        np.testing.assert_array_equal(v["f_rest_17"], p["sh"][:, 3, 1].numpy())
        for c in range(3):
            for k in range(1, 16):
                np.testing.assert_array_equal(v[f"f_rest_{c * 15 + k - 1}"], p["sh"][:, k, c].numpy())
    back = read_ply(path)
    assert set(back) == set(p)
    for key in p:
        assert back[key].dtype == torch.float32 and back[key].shape == p[key].shape
        torch.testing.assert_close(back[key], p[key], atol=1e-6, rtol=0)


@pytest.mark.parametrize("text,byte_order", [(True, "="), (False, ">")])
def test_ply_reader_accepts_other_orders_types_and_ascii(tmp_path, text, byte_order):
    plyfile = pytest.importorskip("plyfile")
    p = make_params(n=7, degree=1, seed=3)
    cols = {"x": p["means"][:, 0], "y": p["means"][:, 1], "z": p["means"][:, 2], "opacity": p["opacity_logits"]}
    for c in range(3):
        cols[f"f_dc_{c}"] = p["sh"][:, 0, c]
        cols[f"scale_{c}"] = p["log_scales"][:, c]
        for k in range(1, 4):
            cols[f"f_rest_{c * 3 + k - 1}"] = p["sh"][:, k, c]
    for j in range(4):
        cols[f"rot_{j}"] = p["quats"][:, j]
    names = sorted(cols, reverse=True) + ["confidence"]  # shuffled order plus an unknown property
    arr = np.zeros(7, dtype=[(n, "f8") for n in names])
    for n in cols:
        arr[n] = cols[n].double().numpy()
    el = plyfile.PlyElement.describe(arr, "vertex")
    path = tmp_path / "other.ply"
    plyfile.PlyData([el], text=text, byte_order=byte_order).write(str(path))
    back = read_ply(path)
    for key in p:
        torch.testing.assert_close(back[key], p[key], atol=1e-6, rtol=0)


def test_ply_bad_f_rest_count(tmp_path):
    p = make_params(n=3, degree=1)
    path = tmp_path / "c.ply"
    write_ply(p, path)
    data = path.read_bytes().replace(b"property float f_rest_8\n", b"property float f_rest_x\n")
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"8 f_rest properties"):
        read_ply(path)


# ------------------------------------------------------------------------------------------------ .splat


def test_splat_round_trip_matches_quantised_expectation(tmp_path):
    p = make_params(n=50, degree=2, seed=1)
    path = tmp_path / "c.splat"
    write_splats(p, path, up="+z")  # our world as it is (the default turns it to RDF, tested below)
    raw = path.read_bytes()
    assert len(raw) == 50 * 32
    # independent expectation: order by descending exp(sum log_scales) * sigmoid(opacity)
    key = torch.exp(p["log_scales"].double().sum(1)) * torch.sigmoid(p["opacity_logits"].double())
    order = torch.argsort(key, descending=True)
    s = {k: v[order] for k, v in p.items()}
    for i in (0, 17, 49):
        rec = raw[32 * i : 32 * (i + 1)]
        pos_scale = struct.unpack("<6f", rec[:24])
        np.testing.assert_array_equal(pos_scale[:3], s["means"][i].numpy())
        np.testing.assert_allclose(pos_scale[3:], torch.exp(s["log_scales"][i]).numpy(), rtol=1e-6)
        rgb = [round(min(max(0.5 + C0 * float(v), 0.0), 1.0) * 255) for v in s["sh"][i, 0]]
        alpha = round(1 / (1 + math.exp(-float(s["opacity_logits"][i]))) * 255)
        q = unit_wxyz(s["quats"][i : i + 1])[0].tolist()
        rot = [min(max(round(v * 128 + 128), 0), 255) for v in q]
        assert list(rec[24:28]) == pytest.approx(rgb + [alpha], abs=1)  # abs=1: half-way rounding ties
        assert list(rec[28:32]) == pytest.approx(rot, abs=1)
    back = read_splats(path, up="+z")
    assert back["sh"].shape == (50, 1, 3)
    torch.testing.assert_close(back["means"], s["means"], atol=0, rtol=0)
    torch.testing.assert_close(back["log_scales"], s["log_scales"], atol=1e-5, rtol=0)
    colour = (0.5 + C0 * s["sh"][:, 0]).clamp(0, 1)
    torch.testing.assert_close(0.5 + C0 * back["sh"][:, 0], colour, atol=0.5 / 255 + 1e-5, rtol=0)
    alpha = torch.sigmoid(s["opacity_logits"]).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(torch.sigmoid(back["opacity_logits"]), alpha, atol=0.5 / 255 + 1e-5, rtol=0)
    torch.testing.assert_close(back["quats"], unit_wxyz(s["quats"]), atol=0.5 / 128 + 1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------ .spz


def _spz_head(path: Path) -> bytes:
    """The first 8 bytes of an spz file's header (version 4: plaintext; 1-3: inside the gzip stream)."""
    data = path.read_bytes()
    return data[:8] if data[:4] == b"NGSP" else gzip.decompress(data)[:8]


@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("up", ["+y", "+z", "-y"])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_spz_round_trip_within_quantisation(tmp_path, version, up, degree):
    p = make_params(n=60, degree=degree, seed=2)
    path = tmp_path / "c.spz"
    write_splats(p, path, version=version, up=up)
    assert _spz_head(path) == struct.pack("<II", 0x5053474E, version)
    back = read_splats(path, up=up)
    assert back["sh"].shape == p["sh"].shape
    torch.testing.assert_close(back["means"], p["means"], atol=0.5 / 4096 + 1e-6, rtol=0)
    torch.testing.assert_close(back["log_scales"], p["log_scales"], atol=0.5 / 16 + 1e-5, rtol=0)
    torch.testing.assert_close(torch.sigmoid(back["opacity_logits"]), torch.sigmoid(p["opacity_logits"]),
                               atol=0.5 / 255 + 1e-3, rtol=0)
    torch.testing.assert_close(back["sh"][:, 0], p["sh"][:, 0], atol=0.5 / (0.15 * 255) + 1e-5, rtol=0)
    if version >= 3:  # smallest three: 9-bit magnitudes in [0, sqrt(1/2)]
        q, r = unit_wxyz(p["quats"]), back["quats"]
        sign = torch.sign((q * r).sum(1, keepdim=True))
        torch.testing.assert_close(r * sign, q, atol=2e-3, rtol=0)
    else:  # first three at 1/127.5 steps, w rebuilt (least accurate when w is small)
        assert float(same_rotation(back["quats"], p["quats"]).min()) > 0.995
    for lo, hi, step in ((1, 4, 8), (4, 16, 16)):  # SH buckets: 5 bits for band 1, 4 bits above
        if (degree + 1) ** 2 <= lo:
            continue
        err = (back["sh"][:, lo:hi] - p["sh"][:, lo:hi]).norm(dim=1)  # per band & channel (rotation-invariant)
        assert float(err.max()) <= math.sqrt(hi - lo) * (step / 2 + 0.5) / 128 + 1e-5


@pytest.mark.parametrize("suffix, rule", [(".spz", "RUB"), (".ply", "RDF"), (".splat", "RDF")])
def test_default_frames_are_the_formats_conventions(tmp_path, suffix, rule):
    """Our z-up world (x right, y forward, z up) is stored as each format's viewers assume it: spz in RUB,
    (x, y, z) -> (x, z, -y); 3DGS PLY and .splat in RDF (3DGS's COLMAP frame), (x, y, z) -> (x, -z, y)."""
    p = make_params(n=30, degree=0 if suffix == ".splat" else 3, seed=4)
    path = tmp_path / f"c{suffix}"
    write_splats(p, path)
    stored = read_splats(path, up="+z")  # the file's own values
    m = p["means"]
    want = torch.stack([m[:, 0], m[:, 2], -m[:, 1]] if rule == "RUB" else [m[:, 0], -m[:, 2], m[:, 1]], 1)
    # (.splat sorts its splats by size x opacity: compare as sets)
    assert float(torch.cdist(want.double(), stored["means"].double()).min(1).values.max()) < 2e-4
    back = read_splats(path)["means"].double()  # and back by default
    assert float(torch.cdist(m.double(), back).min(1).values.max()) < 2e-4


@pytest.mark.parametrize("up", ["+y", "-y"])
def test_turning_a_cloud_keeps_what_it_looks_like(up):
    """Exact (unquantised) turn: rotation matrices and view-dependent colours follow the frame change."""
    from vision3d_kd.data.axes import turn_splat_arrays, up_rotation
    from vision3d_kd.fields.encodings import sh_encoding

    p = make_params(n=30, degree=3, seed=4)
    rot = torch.from_numpy(up_rotation(up))
    a = {k: v.double().numpy() for k, v in p.items()}
    conv = {k: torch.from_numpy(v) for k, v in turn_splat_arrays(a, rot.numpy()).items()}

    def mat(q: torch.Tensor) -> torch.Tensor:
        w, x, y, z = unit_wxyz(q).unbind(1)
        return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).view(-1, 3, 3)

    torch.testing.assert_close(mat(conv["quats"]), rot @ mat(p["quats"].double()), atol=1e-6, rtol=0)
    d = torch.nn.functional.normalize(torch.randn(30, 3, dtype=torch.float64), dim=1)
    ours = (sh_encoding(d, 4)[:, :, None] * p["sh"].double()).sum(1)
    theirs = (sh_encoding(d @ rot.T, 4)[:, :, None] * conv["sh"]).sum(1)
    torch.testing.assert_close(theirs, ours, atol=1e-6, rtol=0)


def _fixed24(v: float, frac: int) -> bytes:
    return (round(v * 2**frac) & 0xFFFFFF).to_bytes(3, "little")


@pytest.mark.parametrize("version", [2, 3, 4])
def test_spz_hand_made_file(tmp_path, version):
    """Two degree-1 splats written byte by byte from the spec (not with our writer)."""
    frac = 10
    pos = [(1.5, -0.25, 2.0), (-3.0, 0.125, 0.0)]
    blocks = [b"".join(_fixed24(v, frac) for xyz in pos for v in xyz)]
    blocks.append(bytes([255, 64]))  # alphas
    blocks.append(bytes([128, 200, 30, 0, 255, 100]))  # colours (r, g, b) per splat
    blocks.append(bytes([160, 144, 128, 96, 112, 176]))  # scales
    s = math.sqrt(0.5)
    if version >= 3:
        # splat 0: identity, largest = w (index 3), others zero
        # splat 1: largest = y (index 1); x: sign 1, mag 300; z: sign 0, mag 0; w: sign 0, mag 100
        comp1 = (1 << 30) | (((1 << 9) | 300) << 20) | (0 << 10) | 100
        blocks.append(struct.pack("<II", 3 << 30, comp1))
        x, w = -s * 300 / 511, s * 100 / 511
        quats = [(1.0, 0.0, 0.0, 0.0), (w, x, math.sqrt(1 - x * x - w * w), 0.0)]
    else:
        blocks.append(bytes([128, 128, 128, 64, 200, 128]))
        q1 = [b / 127.5 - 1 for b in (64, 200, 128)]
        w0 = math.sqrt(1 - 3 * (128 / 127.5 - 1) ** 2)
        quats = [(w0, 128 / 127.5 - 1, 128 / 127.5 - 1, 128 / 127.5 - 1), (math.sqrt(1 - sum(v * v for v in q1)), *q1)]
    sh_bytes = [[128 + 8 * i for i in range(9)], [255 - 16 * i for i in range(9)]]  # coefficient-major, rgb inner
    blocks.append(bytes(sh_bytes[0] + sh_bytes[1]))
    path = tmp_path / "hand.spz"
    if version < 4:
        head = struct.pack("<IIIBBBB", 0x5053474E, version, 2, 1, frac, 0, 0)
        path.write_bytes(gzip.compress(head + b"".join(blocks)))
    else:  # plaintext header with 12 bytes of extension records before the table of streams (flag 0x2)
        import zstandard

        frames = [zstandard.ZstdCompressor(level=3).compress(b) for b in blocks]
        toc = b"".join(struct.pack("<QQ", len(f), len(b)) for f, b in zip(frames, blocks, strict=True))
        head = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, 2, 1, frac, 2, len(frames), 44) + bytes(12)
        path.write_bytes(head + toc + b"".join(frames))

    raw = read_spz(path)  # no frame conversion: the file's own RUB values
    torch.testing.assert_close(raw["means"], torch.tensor(pos), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.sigmoid(raw["opacity_logits"]), torch.tensor([1 - 1e-3, 64 / 255]),
                               atol=1e-6, rtol=0)
    dc = (torch.tensor([[128, 200, 30], [0, 255, 100]]) / 255 - 0.5) / 0.15
    torch.testing.assert_close(raw["sh"][:, 0], dc, atol=1e-5, rtol=0)
    torch.testing.assert_close(raw["log_scales"], torch.tensor([[0.0, -1.0, -2.0], [-4.0, -3.0, 1.0]]))
    torch.testing.assert_close(raw["quats"], torch.tensor(quats, dtype=torch.float32), atol=1e-6, rtol=0)
    rest = (torch.tensor(sh_bytes, dtype=torch.float32).view(2, 3, 3) - 128) / 128  # [splat, coeff, channel]
    torch.testing.assert_close(raw["sh"][:, 1:], rest, atol=1e-6, rtol=0)

    ours = read_splats(path)  # default: RUB -> our z-up world, (x, y, z)_RUB -> (x, -z, y)
    torch.testing.assert_close(ours["means"], torch.tensor([(x, -z, y) for x, y, z in pos]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("version", [2, 3])
def test_spz_writer_bytes_follow_spec(tmp_path, version):
    """Raw bytes of a one-splat file, checked field by field against the documented layout."""
    p = {
        "means": torch.tensor([[1.5, -0.25, 2.0]]),
        "log_scales": torch.tensor([[0.0, -1.0, -2.0]]),
        "quats": torch.tensor([[0.8, 0.6, 0.0, 0.0]]) * 3.0,  # wxyz, unnormalised
        "opacity_logits": torch.tensor([0.0]),
        "sh": torch.tensor([[[0.5, -1.0, 0.0], [0.25, -0.3, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]),
    }
    path = tmp_path / "one.spz"
    write_splats(p, path, version=version, up="+z", antialiased=True)  # +z: the values as they are
    raw = gzip.decompress(path.read_bytes())
    assert raw[:16] == struct.pack("<IIIBBBB", 0x5053474E, version, 1, 1, 12, 1, 0)
    body = raw[16:]
    assert body[:9] == b"".join(_fixed24(v, 12) for v in (1.5, -0.25, 2.0))
    assert body[9] == 128  # sigmoid(0) * 255 = 127.5, rounded half away from zero
    assert list(body[10:13]) == [147, 89, 128]  # 0.5 * 0.15 * 255 + 127.5 = 146.6; -1 -> 89.25; 0 -> 127.5
    assert list(body[13:16]) == [160, 144, 128]  # (log_scale + 10) * 16
    if version == 3:  # xyzw = (0.6, 0, 0, 0.8): largest w (3); x mag = 511 * 0.6 / sqrt(1/2) = 433.6 -> 434
        assert body[16:20] == struct.pack("<I", (3 << 30) | (434 << 20))
        sh = body[20:]
    else:  # round(xyz * 127.5 + 127.5) with w >= 0
        assert list(body[16:19]) == [204, 128, 128]
        sh = body[19:]
    # band 1 in 5-bit buckets of 8: 0.25 -> 160; -0.3 -> 90 -> 88; 0 -> 128; 1.0 -> 256 -> 255
    assert list(sh) == [160, 88, 128, 128, 128, 128, 128, 128, 255]


def test_spz_version_4_holds_the_version_3_blocks_as_zstd_streams(tmp_path):
    """Version 4: 32-byte plaintext header, a table of six [compressed, raw] u64 sizes, then each of
    version 3's attribute blocks as its own ZSTD frame."""
    import zstandard

    p = make_params(n=25, degree=2, seed=6)
    write_splats(p, tmp_path / "v3.spz", version=3, up="+z")
    write_splats(p, tmp_path / "v4.spz", version=4, up="+z")
    v3 = gzip.decompress((tmp_path / "v3.spz").read_bytes())
    v4 = (tmp_path / "v4.spz").read_bytes()
    magic, version, n, degree, frac, flags, streams, toc = struct.unpack_from("<IIIBBBBI", v4)
    assert (magic, version, n, degree, frac, flags, streams, toc) == (0x5053474E, 4, 25, 2, 12, 0, 6, 32)
    assert v4[20:32] == bytes(12) and v3[:16] == struct.pack("<IIIBBBB", 0x5053474E, 3, 25, 2, 12, 0, 0)
    sizes = [struct.unpack_from("<QQ", v4, 32 + 16 * i) for i in range(6)]
    assert [raw for _, raw in sizes] == [25 * 9, 25, 75, 75, 100, 25 * 8 * 3]
    off, body = 32 + 16 * 6, b""
    for packed, raw in sizes:
        body += zstandard.ZstdDecompressor().decompress(v4[off:off + packed], max_output_size=raw)
        off += packed
    assert off == len(v4) and body == v3[16:]

