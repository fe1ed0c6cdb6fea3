"""Blender / nerfstudio loaders: real lego data, hand-made nerfstudio folders, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision3d_kd.data import held_out_split, load_blender, load_dataset, load_nerfstudio
from vision3d_kd.errors import ConfigError, DataError

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
LEGO = SHARED / "nerf_synthetic_lego_200"
BAD = SHARED / "bad_inputs"
BAD_LOADER_ENTRIES = [
    "blender_missing_image", "blender_bad_json", "blender_bad_matrix", "blender_nan_matrix",
    "blender_truncated_png", "blender_mismatched_sizes", "blender_no_frames", "blender_no_intrinsics",
    "nerfstudio_no_focal",
]


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data lives beside the repository only in dev/CI)")
    return path


def test_lego_loads() -> None:
    lego = _need(LEGO)
    train = load_dataset(lego, "train")
    test = load_dataset(lego, "test")
    assert len(train) == 90 and len(test) == 10
    assert train.rgb.shape == (90, 200, 200, 3) and train.opacity.shape == (90, 200, 200, 1)
    assert train.rgb.dtype == torch.float32 and 0 <= train.rgb.min() and train.rgb.max() <= 1
    assert 0.05 < train.opacity.mean() < 0.6 and train.opacity.min() == 0 and train.opacity.max() == 1
    assert train.cameras.width == 200 and train.cameras.height == 200
    assert torch.allclose(train.cameras.origins.norm(dim=-1), torch.full((90,), 4.03), atol=0.02)
    assert torch.allclose(train.aabb, torch.tensor([[-1.5] * 3, [1.5] * 3]))
    assert train.depth is None and train.normal is None
    assert test.names[0] == "r_5" and train.split == "train"
    white = test.images("white")
    assert white.shape == (10, 200, 200, 3) and white[0, 0, 0].tolist() == [1.0, 1.0, 1.0]


def test_lego_downscale() -> None:
    lego = _need(LEGO)
    full = load_blender(lego, "test")
    half = load_blender(lego, "test", downscale=2)
    assert half.rgb.shape == (10, 100, 100, 3)
    assert torch.allclose(half.cameras.fx, full.cameras.fx / 2)
    # premultiplied area averaging: composited images agree with averaged composites
    a = half.images("black")
    b = torch.nn.functional.avg_pool2d(full.images("black").permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("entry", BAD_LOADER_ENTRIES)
def test_bad_inputs_raise_one_line_data_error(entry: str) -> None:
    folder = _need(BAD / entry)
    with pytest.raises(DataError) as info:
        load_dataset(folder)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    named = msg.split(": ")[0]
    assert named.startswith(str(folder)) and Path(named).exists(), msg


def test_missing_and_unknown_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no transforms_train.json, transforms.json or COLMAP model"):
        load_dataset(tmp_path)


def _image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _pose(z: float) -> list[list[float]]:
    return [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, z], [0, 0, 0, 1.0]]


def test_nerfstudio_every_eighth_frame_is_test(tmp_path: Path) -> None:
    frames = []
    for i in range(10):
        _image(tmp_path / "images" / f"f{i}.png", (20 * i, 0, 0))
        frames.append({"file_path": f"images/f{i}.png", "transform_matrix": _pose(float(i))})
    # an explicit box keeps the file's frame (no pose normalisation)
    meta = {"fl_x": 10.0, "fl_y": 11.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "frames": frames,
            "aabb": [[-1, -1, -1], [1, 1, 1]]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    train = load_dataset(tmp_path, "train")
    test = load_nerfstudio(tmp_path, "test")
    assert train.names == [f"f{i}" for i in (1, 2, 3, 4, 5, 6, 7, 9)]
    assert test.names == ["f0", "f8"]
    assert torch.allclose(test.cameras.origins[:, 2], torch.tensor([0.0, 8.0]))
    assert train.cameras.fy[0] == 11.0 and train.cameras.cx[0] == 4.0
    assert train.rgb.shape == (8, 6, 8, 3) and torch.all(train.opacity == 1)
    assert train.rgb[0, 0, 0, 0] == pytest.approx(20 / 255)


def test_held_out_split_follows_the_folder_layout(tmp_path: Path) -> None:
    assert held_out_split(tmp_path) is None  # nothing held out: no evaluation
    (tmp_path / "transforms.json").write_text("{}")
    assert held_out_split(tmp_path) == "test"  # nerfstudio: the loader holds frames out itself
    (tmp_path / "transforms_train.json").write_text("{}")
    assert held_out_split(tmp_path) is None  # Blender layout wins; it has no test/val file yet
    (tmp_path / "transforms_val.json").write_text("{}")
    assert held_out_split(tmp_path) == "val"
    (tmp_path / "transforms_test.json").write_text("{}")
    assert held_out_split(tmp_path) == "test"


def test_nerfstudio_explicit_split_and_per_frame_intrinsics(tmp_path: Path) -> None:
    frames = []
    for i in range(3):
        _image(tmp_path / "img" / f"{i}.jpg", (0, 100, 0))
        frames.append({"file_path": f"./img/{i}.jpg", "transform_matrix": _pose(1.0),
                       "camera_angle_x": 1.0, "cx": 4.5})
    meta = {"frames": frames, "train_filenames": ["img/0.jpg", "img/2.jpg"], "test_filenames": ["img/1.jpg"],
            "aabb": [[-2, -2, -2], [2, 2, 2]]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    train = load_nerfstudio(tmp_path, "train")
    assert train.names == ["0", "2"]
    assert train.cameras.fx[0] == pytest.approx(4.0 / np.tan(0.5))
    assert train.cameras.cx[0] == 4.5 and train.cameras.cy[0] == 3.0
    assert torch.allclose(train.aabb[1], torch.full((3,), 2.0))
    assert load_nerfstudio(tmp_path, "test").names == ["1"]


def test_nerfstudio_bad_values(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", (1, 2, 3))
    meta = {"fl_x": 5.0, "w": 9, "h": 6, "frames": [{"file_path": "a.png", "transform_matrix": _pose(0.0)}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="image is 8x6 but transforms.json says 9x6"):
        load_nerfstudio(tmp_path, "all")
    meta.update(w=8, camera_model="EQUIRECTANGULAR")  # OPENCV_FISHEYE is supported now
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="not supported"):
        load_nerfstudio(tmp_path, "all")
    meta.pop("camera_model")
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError):
        load_nerfstudio(tmp_path, "all", downscale=0)
    assert len(load_nerfstudio(tmp_path, "all")) == 1


def test_blender_aux_maps_must_be_complete_and_finite(tmp_path: Path) -> None:
    frames = []
    for i in range(2):
        _image(tmp_path / "train" / f"r_{i}.png", (9, 9, 9))
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": _pose(3.0)})
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    np.save(tmp_path / "train" / "r_0_depth.npy", np.full((6, 8), np.inf, np.float32))
    with pytest.raises(DataError, match="r_1_depth.npy: does not exist"):
        load_blender(tmp_path)
    np.save(tmp_path / "train" / "r_1_depth.npy", np.full((6, 8), np.nan, np.float32))
    with pytest.raises(DataError, match="r_1_depth.npy: holds NaN"):
        load_blender(tmp_path)
    np.save(tmp_path / "train" / "r_1_depth.npy", np.full((6, 8), 2.0, np.float32))
    ds = load_blender(tmp_path, downscale=2)
    assert ds.depth.shape == (2, 3, 4) and torch.isinf(ds.depth[0]).all() and (ds.depth[1] == 2).all()
