"""Structure from motion (data/sfm.py, data/sfm_inputs.py, `v3kd data process`): poses recovered from a rendered
scene with known cameras, photos and video, and bad input refused in one line with nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import one_line_error, run_cli
from tests.sfm_scene import scene_images
from vision3d_kd.data import load_dataset
from vision3d_kd.data.colmap import colmap_frames, read_colmap_model
from vision3d_kd.data.lens_rays import project
from vision3d_kd.data.sfm import process_photos
from vision3d_kd.data.sfm_inputs import copy_photos, sample_video
from vision3d_kd.errors import DataError
from vision3d_kd.metrics import pose_errors

pytest.importorskip("pycolmap")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray], np.ndarray]:
    """(folder of 20 PNG views view_00..19, the images, their true c2w [20,4,4] OpenGL)."""
    folder = tmp_path_factory.mktemp("photos")
    images, c2ws, _ = scene_images(20, 160, 120)
    for k, rgb in enumerate(images):
        Image.fromarray(rgb).save(folder / f"view_{k:02d}.png")
    return folder, images, c2ws


def _errors(out: Path, true_c2w: np.ndarray, index_of) -> dict[str, float]:
    """pose_errors of the estimated c2w (our COLMAP reader) against the true ones of the same views."""
    model = read_colmap_model(out / "sparse" / "0")
    frames = colmap_frames(model, out / "images", out / "sparse" / "0")
    est = np.stack([f.c2w for f in frames])
    return pose_errors(est, true_c2w[[index_of(f.image.name) for f in frames]])


def _keypoint_residual_px(out: Path) -> float:
    """Median distance (pixels) between each keypoint of the written model and its 3D point projected through
    the written camera: small only when cameras, keypoints and images are at one scale."""
    model = read_colmap_model(out / "sparse" / "0")
    index = {int(pid): k for k, pid in enumerate(model.point_ids)}
    frames = {f.image.name: f for f in colmap_frames(model, out / "images", out / "sparse" / "0")}
    residuals = []
    for image in model.images.values():
        frame = frames[image.name]
        with Image.open(frame.image) as img:
            assert img.size == (frame.lens.width, frame.lens.height)
        has = image.point3d_ids >= 0
        xyz = model.points_xyz[[index[int(i)] for i in image.point3d_ids[has]]]
        pix, _ = project(frame.lens, torch.from_numpy(frame.c2w), torch.from_numpy(xyz))
        residuals.append(np.linalg.norm(pix.numpy() - image.xys[has], axis=1))
    return float(np.median(np.concatenate(residuals)))


def _nothing_left(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_photos_posed_within_a_degree(scene, tmp_path: Path) -> None:
    folder, _, true = scene
    out = tmp_path / "data"
    stages: set[str] = set()
    summary = process_photos(folder, out, progress=lambda stage, done, total: stages.add(stage))
    assert stages == {"copying images", "features", "matching", "mapping", "writing"}
    assert summary["images"] == 20 and summary["registered"] >= 18 and summary["points"] > 200
    assert summary["matcher"] == "exhaustive" and 0 < summary["reprojection_error_px"] < 1.0
    assert sorted(p.name for p in out.iterdir()) == ["images", "sparse", "sparse_pc.ply", "transforms.json"]
    assert len(list((out / "images").iterdir())) == summary["registered"]
    meta = json.loads((out / "transforms.json").read_text())
    assert len(meta["frames"]) == summary["registered"] and meta["camera_model"] == "OPENCV"
    err = _errors(out, true, lambda name: int(name[5:7]))
    print("photo pose errors", err, summary)
    assert err["rot_err_deg_max"] < 1.0 and err["trans_err_max"] < 0.01, err
    assert len(read_colmap_model(out / "sparse" / "0").cameras) == 1  # --single-camera: one per image size
    assert summary["upscale"] == 4  # 160 px images are matched 4x larger, the model is for the images written
    assert _keypoint_residual_px(out) < 0.5
    ds = load_dataset(out, "all")
    assert len(ds.cameras) == summary["registered"]
    with pytest.raises(DataError, match="refusing to overwrite"):
        process_photos(folder, out)


def test_video_frames_posed(scene, tmp_path: Path, capsys) -> None:
    imageio = pytest.importorskip("imageio.v2")
    _, images, true = scene
    video = tmp_path / "walk.mp4"
    with imageio.get_writer(video, fps=10, codec="libx264", quality=10, macro_block_size=8) as writer:
        for rgb in images:
            writer.append_data(rgb)
    out = tmp_path / "data"
    assert run_cli(["data", "process", str(video), "--out", str(out), "--frames", "20", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "sequential matching" in printed, printed
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names[0].startswith("frame_") and len(names) >= 18
    err = _errors(out, true, lambda name: int(name[6:11]) - 1)
    print("video pose errors", err)
    assert err["rot_err_deg_max"] < 1.0 and err["trans_err_max"] < 0.01, err


def test_video_sampling_keeps_the_sharp_frames(tmp_path: Path) -> None:
    imageio = pytest.importorskip("imageio.v2")
    import cv2

    rng = np.random.default_rng(0)
    sharp = [np.repeat(rng.integers(0, 256, (64, 80, 1), dtype=np.uint8), 3, 2) for _ in range(4)]
    video = tmp_path / "v.mp4"
    with imageio.get_writer(video, fps=10, codec="libx264", quality=10, macro_block_size=8) as writer:
        for rgb in sharp:  # each window: blurred, sharp, blurred, blurred
            blur = cv2.GaussianBlur(rgb, (0, 0), 3)
            for frame in (blur, rgb, blur, blur):
                writer.append_data(frame)
    (tmp_path / "frames").mkdir()
    names, warnings = sample_video(video, tmp_path / "frames", 4, 1600)
    assert names == [f"frame_{k:05d}.png" for k in range(1, 5)] and not warnings
    for k, name in enumerate(names):
        got = np.asarray(Image.open(tmp_path / "frames" / name), np.float32)
        assert np.abs(got - sharp[k]).mean() < 20  # the sharp frame, not a blurred neighbour


def test_photos_upright_and_downscaled(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    img = Image.fromarray(np.arange(40 * 30 * 3, dtype=np.uint8).reshape(30, 40, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(src / "a.jpg", exif=exif)
    Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(src / "b.png")
    (src / "notes.txt").write_text("not an image")
    names, warnings = copy_photos(src, dst, max_size=100)
    assert names == ["a.jpg", "b.png"] and len(warnings) == 1 and "skipped 1 files" in warnings[0]
    with Image.open(dst / "a.jpg") as a:
        assert a.size == (30, 40) and a.getexif().get(0x0112, 1) == 1
    with Image.open(dst / "b.png") as b:
        assert b.size == (67, 100)


def test_bad_sources_one_line_and_nothing_left(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n")
    for source in (empty, fake, tmp_path / "missing"):
        out = tmp_path / "out"
        assert run_cli(["data", "process", str(source), "--out", str(out), "--no-progress"]) == 2
        one_line_error(capsys, str(source))
        _nothing_left(out)
    assert run_cli(["data", "process", str(empty), "--out", str(tmp_path / "o"), "--matcher", "nope"]) == 2
    one_line_error(capsys, "matcher")
    assert run_cli(["data", "process", str(empty), "--out", str(tmp_path / "o"), "--principal-point", "x"]) == 2
    one_line_error(capsys, "--principal-point")
    _nothing_left(tmp_path / "o")


def test_too_few_registered_is_an_error(tmp_path: Path, capsys) -> None:
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(1)
    for k in range(4):  # unrelated images: nothing matches, nothing registers
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(noise / f"{k}.png")
    out = tmp_path / "deep" / "out"
    assert run_cli(["data", "process", str(noise), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {noise}: ") and "registered" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "deep").exists()


def test_process_help_lists_every_option(capsys) -> None:
    assert run_cli(["data", "process", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--frames", "--matcher", "--camera-model", "--single-camera", "--per-image-camera",
                 "--max-size", "--principal-point", "--progress", "--no-progress"):
        assert flag in text, flag
