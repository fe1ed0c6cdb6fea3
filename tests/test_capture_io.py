"""Capture folders (data/capture_io.py): images + COLMAP model + transforms.json + sparse_pc.ply, atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision3d_kd.data import load_dataset
from vision3d_kd.data.capture_io import CapturedFrame, read_points_ply, write_capture, write_points_ply
from vision3d_kd.data.colmap import colmap_frames, find_colmap_model, read_colmap_model
from vision3d_kd.data.lens import Lens
from vision3d_kd.data.normalize import transform_c2w
from vision3d_kd.errors import DataError


def _c2w(rng: np.random.Generator) -> np.ndarray:
    """A random rigid camera-to-world (OpenGL)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = (q if np.linalg.det(q) > 0 else -q), rng.normal(size=3) * 3
    return c2w


def _one_line(info: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


def _capture_frames(rng: np.random.Generator) -> list[CapturedFrame]:
    pinhole = Lens("PINHOLE", 16, 12, 20.0, 21.0, 8.0, 6.0)
    fisheye = Lens("OPENCV_FISHEYE", 16, 12, 10.0, 10.0, 8.5, 6.5, (0.1, -0.01, 0.002, 0.0))
    return [CapturedFrame(f"frame_{i:05d}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), _c2w(rng),
                          fisheye if i == 2 else pinhole) for i in range(4)]


def test_write_capture(tmp_path: Path) -> None:
    trimesh = pytest.importorskip("trimesh")
    plyfile = pytest.importorskip("plyfile")
    rng = np.random.default_rng(2)
    frames = _capture_frames(rng)
    xyz, rgb = rng.normal(size=(50, 3)), rng.integers(0, 256, (50, 3), dtype=np.uint8)
    out = write_capture(tmp_path / "nested" / "cap", frames, xyz, rgb, extra={"scene": "test", "aabb": [[-1] * 3,
                                                                                                      [1] * 3]})
    assert sorted(p.name for p in out.iterdir()) == ["images", "sparse", "sparse_pc.ply", "transforms.json"]
    cloud = trimesh.load(out / "sparse_pc.ply")
    np.testing.assert_allclose(cloud.vertices, xyz.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], rgb)
    vertex = plyfile.PlyData.read(str(out / "sparse_pc.ply"))["vertex"]
    np.testing.assert_array_equal(np.stack([vertex[c] for c in ("red", "green", "blue")], 1), rgb)
    xyz2, rgb2 = read_points_ply(out / "sparse_pc.ply")
    np.testing.assert_allclose(xyz2, xyz, atol=1e-6)
    np.testing.assert_array_equal(rgb2, rgb)

    meta = json.loads((out / "transforms.json").read_text())
    assert meta["ply_file_path"] == "sparse_pc.ply" and meta["scene"] == "test" and "camera_model" not in meta
    for f, entry in zip(frames, meta["frames"], strict=True):
        assert entry["file_path"] == f"images/{f.name}" and (out / entry["file_path"]).is_file()
        np.testing.assert_allclose(entry["transform_matrix"], f.c2w)
        assert (entry["fl_x"], entry["cx"], entry["w"], entry["h"]) == (f.lens.fx, f.lens.cx, 16, 12)
        assert entry["camera_model"] == f.lens.model
        keys = ("k1", "k2", "k3", "k4") if f.lens.is_fisheye else ("k1", "k2", "p1", "p2")
        assert [entry[k] for k in keys] == list(f.lens.dist or (0.0,) * 4)

    folder = find_colmap_model(out)
    model = read_colmap_model(folder)
    assert len(model.cameras) == 2  # one camera per distinct lens
    for f, spec in zip(frames, colmap_frames(model, out / "images", folder), strict=True):
        np.testing.assert_allclose(spec.c2w, f.c2w, atol=1e-9)
        assert spec.lens == f.lens
        np.testing.assert_array_equal(np.asarray(Image.open(spec.image)), f.rgb)
    try:
        import pycolmap
    except ImportError:
        return
    rec = pycolmap.Reconstruction(str(folder))
    assert rec.num_images() == 4 and rec.num_points3D() == 50
    assert sorted(c.model.name for c in rec.cameras.values()) == ["OPENCV_FISHEYE", "PINHOLE"]


def test_write_capture_shared_model_and_atomicity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    frames = [f for f in _capture_frames(rng) if f.lens.model == "PINHOLE"]
    xyz, rgb = np.zeros((2, 3)), np.zeros((2, 3), np.uint8)
    out = write_capture(tmp_path / "a", frames, xyz, rgb)
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["camera_model"] == "PINHOLE" and all("camera_model" not in f for f in meta["frames"])
    data = load_dataset(out, "all")  # the package's nerfstudio loader reads the capture back
    assert data.rgb.shape == (3, 12, 16, 3) and float(data.cameras.fx[0]) == 20.0
    # poses come back normalised; the recorded transform maps the written ones onto them
    want = transform_c2w(data.transform.numpy(), np.stack([f.c2w for f in frames]))
    np.testing.assert_allclose(data.cameras.c2w.numpy(), want, atol=1e-5)
    assert len(data.points) == len(xyz)
    with pytest.raises(DataError, match="already exists"):
        write_capture(out, frames, xyz, rgb)

    import vision3d_kd.data.capture_io as capture_io

    def boom(*args: object, **kwargs: object) -> None:
        raise DataError("disk full (simulated)")

    monkeypatch.setattr(capture_io, "write_transforms_json", boom)
    with pytest.raises(DataError, match="simulated"):
        write_capture(tmp_path / "new" / "b", frames, xyz, rgb)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="simulated"):
        write_capture(tmp_path / "empty", frames, xyz, rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty"] and not any((tmp_path / "empty").iterdir())
    monkeypatch.undo()

    bad = [CapturedFrame("x.png", np.zeros((5, 5, 3), np.uint8), np.eye(4), frames[0].lens)]
    with pytest.raises(DataError, match="5x5 but its lens is 16x12"):
        write_capture(tmp_path / "c", bad, xyz, rgb)
    skewed = [CapturedFrame(frames[0].name, frames[0].rgb, np.diag([2.0, 1, 1, 1]), frames[0].lens)]
    with pytest.raises(DataError, match="not a rigid"):
        write_capture(tmp_path / "c", skewed, xyz, rgb)
    for name in ("sub/x.png", "x.jpg", ".png"):
        with pytest.raises(DataError, match="plain file name ending in .png"):
            write_capture(tmp_path / "c", [CapturedFrame(name, frames[0].rgb, frames[0].c2w, frames[0].lens)], xyz, rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "empty"]


def test_read_points_ply_ascii_and_bad(tmp_path: Path) -> None:
    ascii_ply = tmp_path / "a.ply"
    ascii_ply.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                         "property float z\nend_header\n1 2 3\n4 5 6\n")
    xyz, rgb = read_points_ply(ascii_ply)
    np.testing.assert_array_equal(xyz, [[1, 2, 3], [4, 5, 6]])
    assert rgb.dtype == np.uint8 and (rgb == 128).all()
    good = write_points_ply(tmp_path / "b.ply", np.ones((4, 3)), np.full((4, 3), 7, np.uint8))
    good.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(DataError) as info:
        read_points_ply(good)
    assert "truncated" in _one_line(info, good)
    ascii_ply.write_text(ascii_ply.read_text().replace("4 5 6", "4 five 6"))
    with pytest.raises(DataError) as info:
        read_points_ply(ascii_ply)
    _one_line(info, ascii_ply)
