"""Gaussian-splat file I/O: 3DGS PLY layout, .splat and .spz round trips, hand-made spz bytes, bad inputs, atomicity."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vision3d_kd.data import splat_io, spz
from vision3d_kd.data.splat_io import (
    read_ply,
    read_splat,
    read_splats,
    read_spz,
    validate_params,
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
    write_splats(p, path)
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
    back = read_splats(path)
    assert back["sh"].shape == (50, 1, 3)
    torch.testing.assert_close(back["means"], s["means"], atol=0, rtol=0)
    torch.testing.assert_close(back["log_scales"], s["log_scales"], atol=1e-5, rtol=0)
    colour = (0.5 + C0 * s["sh"][:, 0]).clamp(0, 1)
    torch.testing.assert_close(0.5 + C0 * back["sh"][:, 0], colour, atol=0.5 / 255 + 1e-5, rtol=0)
    alpha = torch.sigmoid(s["opacity_logits"]).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(torch.sigmoid(back["opacity_logits"]), alpha, atol=0.5 / 255 + 1e-5, rtol=0)
    torch.testing.assert_close(back["quats"], unit_wxyz(s["quats"]), atol=0.5 / 128 + 1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------ .spz


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("up", ["+y", "+z"])
@pytest.mark.parametrize("degree", [0, 1, 3])
def test_spz_round_trip_within_quantisation(tmp_path, version, up, degree):
    p = make_params(n=60, degree=degree, seed=2)
    path = tmp_path / "c.spz"
    write_splats(p, path, version=version, up=up)
    assert gzip.decompress(path.read_bytes())[:8] == struct.pack("<II", 0x5053474E, version)
    back = read_splats(path, up=up)
    assert back["sh"].shape == p["sh"].shape
    torch.testing.assert_close(back["means"], p["means"], atol=0.5 / 4096 + 1e-6, rtol=0)
    torch.testing.assert_close(back["log_scales"], p["log_scales"], atol=0.5 / 16 + 1e-5, rtol=0)
    torch.testing.assert_close(torch.sigmoid(back["opacity_logits"]), torch.sigmoid(p["opacity_logits"]),
                               atol=0.5 / 255 + 1e-3, rtol=0)
    torch.testing.assert_close(back["sh"][:, 0], p["sh"][:, 0], atol=0.5 / (0.15 * 255) + 1e-5, rtol=0)
    if version == 3:  # smallest three: 9-bit magnitudes in [0, sqrt(1/2)]
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


def test_spz_frame_is_rub(tmp_path):
    """Our z-up world (x right, y forward, z up) is stored as RUB: (x, y, z) -> (x, z, -y)."""
    from vision3d_kd.fields.encodings import sh_encoding

    p = make_params(n=30, degree=3, seed=4)
    path = tmp_path / "c.spz"
    write_splats(p, path)  # default up="+z"
    stored = read_spz(path, up="+y")  # raw RUB values
    m = p["means"]
    torch.testing.assert_close(stored["means"], torch.stack([m[:, 0], m[:, 2], -m[:, 1]], 1), atol=2e-4, rtol=0)
    # exact (unquantised) conversion: rotation matrices and view-dependent colours follow the frame change
    rot = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=torch.float64)
    a = {k: v.double().numpy() for k, v in p.items()}
    conv = {k: torch.from_numpy(v) for k, v in spz.rotate_arrays(a, *spz.frame_rotation("+z")).items()}

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


@pytest.mark.parametrize("version", [2, 3])
def test_spz_hand_made_file(tmp_path, version):
    """Two degree-1 splats written byte by byte from the spec (not with our writer)."""
    frac = 10
    pos = [(1.5, -0.25, 2.0), (-3.0, 0.125, 0.0)]
    header = struct.pack("<IIIBBBB", 0x5053474E, version, 2, 1, frac, 0, 0)
    body = b"".join(_fixed24(v, frac) for xyz in pos for v in xyz)
    body += bytes([255, 64])  # alphas
    body += bytes([128, 200, 30, 0, 255, 100])  # colours (r, g, b) per splat
    body += bytes([160, 144, 128, 96, 112, 176])  # scales
    s = math.sqrt(0.5)
    if version == 3:
        # splat 0: identity, largest = w (index 3), others zero
        # splat 1: largest = y (index 1); x: sign 1, mag 300; z: sign 0, mag 0; w: sign 0, mag 100
        comp1 = (1 << 30) | (((1 << 9) | 300) << 20) | (0 << 10) | 100
        body += struct.pack("<II", 3 << 30, comp1)
        x, w = -s * 300 / 511, s * 100 / 511
        quats = [(1.0, 0.0, 0.0, 0.0), (w, x, math.sqrt(1 - x * x - w * w), 0.0)]
    else:
        body += bytes([128, 128, 128, 64, 200, 128])
        q1 = [b / 127.5 - 1 for b in (64, 200, 128)]
        w0 = math.sqrt(1 - 3 * (128 / 127.5 - 1) ** 2)
        quats = [(w0, 128 / 127.5 - 1, 128 / 127.5 - 1, 128 / 127.5 - 1), (math.sqrt(1 - sum(v * v for v in q1)), *q1)]
    sh_bytes = [[128 + 8 * i for i in range(9)], [255 - 16 * i for i in range(9)]]  # coefficient-major, rgb inner
    body += bytes(sh_bytes[0] + sh_bytes[1])
    path = tmp_path / "hand.spz"
    path.write_bytes(gzip.compress(header + body))

    raw = read_spz(path, up="+y")  # no frame conversion: the file's own RUB values
    torch.testing.assert_close(raw["means"], torch.tensor(pos), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.sigmoid(raw["opacity_logits"]), torch.tensor([1 - 1e-3, 64 / 255]),
                               atol=1e-6, rtol=0)
    dc = (torch.tensor([[128, 200, 30], [0, 255, 100]]) / 255 - 0.5) / 0.15
    torch.testing.assert_close(raw["sh"][:, 0], dc, atol=1e-5, rtol=0)
    torch.testing.assert_close(raw["log_scales"], torch.tensor([[0.0, -1.0, -2.0], [-4.0, -3.0, 1.0]]))
    torch.testing.assert_close(raw["quats"], torch.tensor(quats, dtype=torch.float32), atol=1e-6, rtol=0)
    rest = (torch.tensor(sh_bytes, dtype=torch.float32).view(2, 3, 3) - 128) / 128  # [splat, coeff, channel]
    torch.testing.assert_close(raw["sh"][:, 1:], rest, atol=1e-6, rtol=0)

    ours = read_spz(path)  # default: RUB -> our z-up world, (x, y, z)_RUB -> (x, -z, y)
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
    write_splats(p, path, version=version, up="+y", antialiased=True)
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


# ------------------------------------------------------------------------------------------------ bad inputs


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and path.name in msg


@pytest.mark.parametrize("name", ["splats_missing_opacity.ply", "splats_nan.ply", "truncated.splat"])
def test_shared_bad_inputs(name):
    if not BAD_INPUTS.is_dir():
        pytest.skip(f"{BAD_INPUTS} not present (shared data is only beside the repo in CI/dev)")
    path = BAD_INPUTS / name
    with pytest.raises(DataError) as err:
        read_splats(path)
    assert_one_line_naming(err, path)
    expected = {"splats_missing_opacity.ply": "opacity", "splats_nan.ply": "non-finite", "truncated.splat": "32"}
    assert expected[name] in str(err.value)


def _spz_blob(magic: int = 0x5053474E, version: int = 3, n: int = 1, cut: int = 0) -> bytes:
    raw = struct.pack("<IIIBBBB", magic, version, n, 0, 12, 0, 0) + bytes(n * 20)
    return gzip.compress(raw[: len(raw) - cut])


SYNTHETIC = {
    "empty.ply": (b"", "empty"),
    "empty.splat": (b"", "empty"),
    "empty.spz": (b"", "empty"),
    "notply.ply": (b"solid cube\nfacet normal 0 0 1\n", "not a PLY"),
    "noend.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n", "end_header"),
    "badline.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty floot x\nend_header\n",
                    "header"),
    "cut.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nend_header\n" + bytes(5),
                "truncated"),
    "nan.splat": (struct.pack("<6f8B", 0, float("nan"), 0, 1, 1, 1, *range(8)), "non-finite"),
    "magic.spz": (_spz_blob(magic=0x12345678), "magic"),
    "version.spz": (_spz_blob(version=7), "version 7"),
    "v4.spz": (b"NGSP" + bytes(28), "version 4"),
    "short.spz": (_spz_blob(cut=5), "truncated"),
    "garbage.spz": (b"\x1f\x8b\x08\x00" + bytes(range(60)), "gzip"),
    "plain.spz": (b"this is not gzip at all", "gzip"),
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_bad_inputs(tmp_path, name):
    data, needle = SYNTHETIC[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        read_splats(path)
    assert_one_line_naming(err, path)
    assert needle in str(err.value)


def test_missing_file_and_unknown_suffix(tmp_path):
    for name in ("absent.ply", "absent.splat", "absent.spz"):
        with pytest.raises(DataError, match="not found") as err:
            read_splats(tmp_path / name)
        assert_one_line_naming(err, tmp_path / name)
    (tmp_path / "c.obj").write_bytes(b"v 0 0 0\n")
    with pytest.raises(DataError, match="suffix"):
        read_splats(tmp_path / "c.obj")
    with pytest.raises(ValueError, match="suffix"):
        write_splats(make_params(n=2), tmp_path / "c.obj")
    with pytest.raises(DataError, match="does not exist"):
        write_splats(make_params(n=2), tmp_path / "nodir" / "c.ply")


def test_validate_params_rejects_bad_shapes_and_values():
    assert validate_params(make_params(n=3, degree=2)) == 2
    cases = {
        "means": torch.zeros(3, 2),
        "log_scales": torch.zeros(4, 3),
        "quats": torch.zeros(3, 3),
        "opacity_logits": torch.zeros(3, 1),
        "sh": torch.zeros(3, 5, 3),
    }
    for key, bad in cases.items():
        p = make_params(n=3)
        p[key] = bad
        with pytest.raises(ValueError, match=key):
            validate_params(p)
    p = make_params(n=3)
    p["log_scales"][1, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        validate_params(p)
    p = make_params(n=3)
    del p["sh"]
    with pytest.raises(ValueError, match="missing keys: sh"):
        validate_params(p)


# ------------------------------------------------------------------------------------------------ atomicity


def leftovers(directory: Path) -> list[str]:
    return sorted(f.name for f in directory.iterdir())


@pytest.mark.parametrize("suffix", [".ply", ".splat", ".spz"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, suffix):
    p = make_params(n=9)
    p["means"][4, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        write_splats(p, tmp_path / f"nan{suffix}")
    assert leftovers(tmp_path) == []

    def half_then_fail(f, a):
        f.write(np.ascontiguousarray(a).tobytes()[:50])
        raise RuntimeError("disk full")

    old = tmp_path / f"old{suffix}"
    old.write_bytes(b"previous content")
    monkeypatch.setattr(splat_io, "_write_array", half_then_fail)
    for target in (tmp_path / f"new{suffix}", old):
        with pytest.raises(RuntimeError, match="disk full"):
            write_splats(make_params(n=9), target)
    assert leftovers(tmp_path) == [old.name]
    assert old.read_bytes() == b"previous content"
    monkeypatch.undo()
    write_splats(make_params(n=9), old)
    assert leftovers(tmp_path) == [old.name]
    assert read_splats(old)["means"].shape == (9, 3)


def test_read_splat_direct(tmp_path):
    p = make_params(n=4, degree=0)
    write_splats(p, tmp_path / "a.bin", fmt="splat")
    assert read_splat(tmp_path / "a.bin")["means"].shape == (4, 3)
    write_splats(p, tmp_path / "b.bin", fmt="ply")
    torch.testing.assert_close(read_splats(tmp_path / "b.bin", fmt="3dgs-ply")["sh"], p["sh"])
