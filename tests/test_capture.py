"""Real-capture loading: undistortion, mixed image sizes, pose normalisation, Instant-NGP keys, EXIF."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vision3d_kd.data import load_dataset
from vision3d_kd.data.lens import Lens
from vision3d_kd.data.normalize import focus_point, normalizing_transform, transform_c2w
from vision3d_kd.data.undistort import undistorted_pinhole
from vision3d_kd.errors import DataError
from vision3d_kd.metrics import psnr


def _texture(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth colour pattern on the plane z = -1 (camera frame), x, y in plane units."""
    return np.stack([0.5 + 0.4 * np.sin(5 * x), 0.5 + 0.4 * np.cos(4 * y), 0.5 + 0.3 * np.sin(3 * (x + y))], -1)


def _photo(lens: Lens) -> np.ndarray:
    """What `lens` sees of the textured plane z = -1 straight ahead: uint8 [H, W, 3], distortion applied
    exactly (OpenCV undistorts each pixel's coordinate back to its ray)."""
    u, v = np.meshgrid(np.arange(lens.width) + 0.5, np.arange(lens.height) + 0.5)
    pix = np.stack([u - 0.5, v - 0.5], -1).reshape(-1, 1, 2)
    if lens.is_fisheye:
        xy = cv2.fisheye.undistortPoints(pix, lens.opencv_K(), lens.opencv_dist())
    else:
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
        xy = cv2.undistortPoints(pix, lens.opencv_K(), lens.opencv_dist(), criteria=crit)
    xy = xy.reshape(lens.height, lens.width, 2)
    return (_texture(xy[..., 0], xy[..., 1]) * 255 + 0.5).astype(np.uint8)


def _frame(name: str, lens: Lens, c2w: np.ndarray | None = None) -> dict:
    keys = {"fl_x": lens.fx, "fl_y": lens.fy, "cx": lens.cx, "cy": lens.cy, "w": lens.width, "h": lens.height}
    names = ("k1", "k2", "k3", "k4") if lens.is_fisheye else ("k1", "k2", "p1", "p2")
    keys.update(zip(names, lens.dist, strict=False))
    pose = np.eye(4) if c2w is None else c2w
    return {"file_path": f"images/{name}.png", "transform_matrix": pose.tolist(), **keys}


@pytest.mark.parametrize("model,dist", [("OPENCV", (-0.15, 0.03, 0.002, -0.001)),
                                        ("OPENCV_FISHEYE", (0.05, -0.02, 0.004, 0.0))])
def test_undistorted_frames_match_the_pinhole_truth(tmp_path: Path, model: str, dist: tuple) -> None:
    lens = Lens(model, 96, 72, 80.0, 81.0, 47.0, 37.0, dist)
    (tmp_path / "images").mkdir()
    Image.fromarray(_photo(lens)).save(tmp_path / "images" / "a.png")
    meta = {"camera_model": model, "aabb": [[-1] * 3, [1] * 3], "frames": [_frame("a", lens)]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ds = load_dataset(tmp_path, "all")
    pin = undistorted_pinhole(lens)
    cam = ds.cameras
    assert (cam.fx.item(), cam.cx.item(), cam.width) == pytest.approx((pin.fx, pin.cx, pin.width))
    u, v = np.meshgrid(np.arange(96) + 0.5, np.arange(72) + 0.5)
    truth = torch.tensor(_texture((u - pin.cx) / pin.fx, (v - pin.cy) / pin.fy), dtype=torch.float32)
    assert psnr(ds.rgb[0], truth) > 33.0
    naive = load_dataset(tmp_path, "all", undistort=False)  # ignoring the coefficients is far worse
    assert psnr(naive.rgb[0], truth) < psnr(ds.rgb[0], truth) - 8


def test_mixed_sizes_share_one_canvas_with_exact_intrinsics(tmp_path: Path) -> None:
    big, small = Lens("PINHOLE", 64, 48, 60.0, 60.0, 32.0, 24.0), Lens("PINHOLE", 40, 40, 30.0, 30.0, 20.0, 20.0)
    (tmp_path / "images").mkdir()
    frames = []
    for i, lens in enumerate([big, big, small]):
        Image.fromarray(_photo(lens)).save(tmp_path / "images" / f"f{i}.png")
        frames.append(_frame(f"f{i}", lens))
    meta = {"aabb": [[-1] * 3, [1] * 3], "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ds = load_dataset(tmp_path, "all")
    assert ds.rgb.shape == (3, 48, 64, 3)  # the most common size
    assert ds.cameras.fx[2].item() == pytest.approx(30.0 * 64 / 40)
    assert ds.cameras.fy[2].item() == pytest.approx(30.0 * 48 / 40)
    u, v = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    cam = ds.cameras
    truth = _texture((u - cam.cx[2].item()) / cam.fx[2].item(), (v - cam.cy[2].item()) / cam.fy[2].item())
    assert psnr(ds.rgb[2], torch.tensor(truth, dtype=torch.float32)) > 28.0


def _ring(n: int, centre: np.ndarray, radius: float, tilt: np.ndarray) -> np.ndarray:
    """c2w [n,4,4] (OpenGL) on a ring about `centre`, all looking at it, 'up' = tilt (unit)."""
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    e1 = np.cross(tilt, [1.0, 0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(tilt, e1)
    out = []
    for t in a:
        pos = centre + radius * (np.cos(t) * e1 + np.sin(t) * e2) + 0.3 * radius * tilt
        back = (pos - centre) / np.linalg.norm(pos - centre)
        right = np.cross(tilt, back)
        right /= np.linalg.norm(right)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, pos
        out.append(m)
    return np.stack(out)


def test_normalisation_orients_up_centres_on_the_focus_and_scales() -> None:
    tilt = np.array([0.3, -0.2, 0.93])
    tilt /= np.linalg.norm(tilt)
    centre = np.array([4.0, -2.0, 7.0])
    c2w = _ring(12, centre, 6.0, tilt)
    assert np.allclose(focus_point(c2w), centre, atol=1e-6)
    t = normalizing_transform(c2w)
    moved = transform_c2w(t, c2w)
    assert np.allclose(moved[:, :3, 1].mean(0) / np.linalg.norm(moved[:, :3, 1].mean(0)), [0, 0, 1], atol=1e-6)
    assert np.abs(moved[:, :3, 3]).max() == pytest.approx(1.0)
    assert np.allclose(focus_point(moved), 0.0, atol=1e-6)
    assert np.allclose(np.linalg.det(moved[:, :3, :3]), 1.0)


def test_splits_share_the_normalisation_and_ngp_keys_set_the_frame(tmp_path: Path) -> None:
    lens = Lens("PINHOLE", 16, 12, 14.0, 14.0, 8.0, 6.0)
    c2w = _ring(10, np.array([1.0, 2.0, 3.0]), 4.0, np.array([0.0, 0.0, 1.0]))
    (tmp_path / "images").mkdir()
    frames = []
    for i in range(10):
        Image.fromarray(_photo(lens)).save(tmp_path / "images" / f"f{i}.png")
        frames.append(_frame(f"f{i}", lens, c2w[i]))
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": frames}))
    train, test = load_dataset(tmp_path, "train"), load_dataset(tmp_path, "test")
    assert torch.equal(train.transform, test.transform) and train.scene == "unbounded"  # opaque photos
    both = torch.cat([train.cameras.origins, test.cameras.origins])
    assert both.abs().max().item() == pytest.approx(1.0, abs=1e-5)
    # Instant-NGP: x -> 2 (x scale + offset - 0.5); aabb_scale 1 is a bounded scene
    meta = {"frames": frames, "scale": 0.25, "offset": [0.5, 0.0, 0.25], "aabb_scale": 1}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ngp = load_dataset(tmp_path, "all")
    want = 2 * (torch.tensor(c2w[:, :3, 3]) * 0.25 + torch.tensor([0.5, 0.0, 0.25]) - 0.5)
    assert torch.allclose(ngp.cameras.origins.double(), want, atol=1e-5) and ngp.scene == "bounded"
    meta["aabb_scale"] = 4
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    assert load_dataset(tmp_path, "all").scene == "unbounded"
    assert load_dataset(tmp_path, "all", scene="bounded").scene == "bounded"


def test_exif_rotation_follows_the_declared_size(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    img = Image.fromarray(np.zeros((12, 16, 3), np.uint8))  # stored 16x12 landscape
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees: shown as 12x16 portrait
    img.save(tmp_path / "images" / "p.jpg", exif=exif)
    frame = {"file_path": "images/p.jpg", "transform_matrix": np.eye(4).tolist(), "fl_x": 10.0}
    for w, h, shape in ((12, 16, (16, 12)), (16, 12, (12, 16))):
        meta = {"aabb": [[-1] * 3, [1] * 3], "frames": [{**frame, "w": w, "h": h}]}
        (tmp_path / "transforms.json").write_text(json.dumps(meta))
        assert load_dataset(tmp_path, "all").rgb.shape[1:3] == shape
    meta = {"aabb": [[-1] * 3, [1] * 3], "frames": [{**frame, "w": 20, "h": 12}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="image is 16x12 but transforms.json says 20x12"):
        load_dataset(tmp_path, "all")


def test_depth_maps_become_ray_distances_in_model_units(tmp_path: Path) -> None:
    # the plane z = -1 seen straight on: camera-z depth 1 (1000 mm) everywhere, here at half resolution
    lens = Lens("OPENCV", 64, 48, 55.0, 55.0, 32.0, 24.0, (-0.1, 0.01, 0.0, 0.0))
    (tmp_path / "images").mkdir()
    Image.fromarray(_photo(lens)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.full((24, 32), 1000, np.uint16)).save(tmp_path / "images" / "a_depth.png")
    frame = {**_frame("a", lens), "depth_file_path": "images/a_depth.png"}
    meta = {"camera_model": "OPENCV", "aabb": [[-1] * 3, [1] * 3], "frames": [frame]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ds = load_dataset(tmp_path, "all")
    cam = ds.cameras
    u, v = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    want = np.sqrt(1 + ((u - cam.cx.item()) / cam.fx.item()) ** 2 + ((v - cam.cy.item()) / cam.fy.item()) ** 2)
    assert ds.depth.shape == (1, 48, 64) and np.allclose(ds.depth[0].numpy(), want, atol=1e-4)
    frame["depth_file_path"] = "images/missing.png"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="depth_file_path images/missing.png not found"):
        load_dataset(tmp_path, "all")


def test_masks_become_opacity_and_make_the_scene_bounded(tmp_path: Path) -> None:
    lens = Lens("PINHOLE", 16, 12, 14.0, 14.0, 8.0, 6.0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    c2w = _ring(3, np.zeros(3), 3.0, np.array([0.0, 0.0, 1.0]))
    frames = []
    for i in range(3):
        Image.fromarray(_photo(lens)).save(tmp_path / "images" / f"f{i}.png")
        keep = np.zeros((12, 16), np.uint8)
        keep[3:9, 4:12] = 255
        Image.fromarray(keep).save(tmp_path / "masks" / f"f{i}.png")
        frames.append({**_frame(f"f{i}", lens, c2w[i]), "mask_path": f"masks/f{i}.png"})
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": frames}))
    ds = load_dataset(tmp_path, "all")
    assert ds.scene == "bounded" and ds.opacity[0, 5, 6, 0] == 1.0 and ds.opacity[0, 0, 0, 0] == 0.0
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "masks" / "f1.png")
    with pytest.raises(DataError, match="f1.png: mask is 5x5, its image 16x12"):
        load_dataset(tmp_path, "all")


def test_an_opaque_alpha_channel_is_still_a_photo(tmp_path: Path) -> None:
    lens = Lens("PINHOLE", 16, 12, 14.0, 14.0, 8.0, 6.0)
    (tmp_path / "images").mkdir()
    c2w = _ring(3, np.zeros(3), 3.0, np.array([0.0, 0.0, 1.0]))
    rgba = np.concatenate([_photo(lens), np.full((12, 16, 1), 255, np.uint8)], axis=-1)
    frames = []
    for i in range(3):
        Image.fromarray(rgba).save(tmp_path / "images" / f"f{i}.png")
        frames.append(_frame(f"f{i}", lens, c2w[i]))
    (tmp_path / "transforms.json").write_text(json.dumps({"frames": frames}))
    assert load_dataset(tmp_path, "all").scene == "unbounded"  # RGBA but fully opaque
    rgba[:4, :4, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "images" / "f0.png")
    assert load_dataset(tmp_path, "all").scene == "bounded"
