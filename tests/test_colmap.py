"""COLMAP sparse models (data/colmap.py, data/colmap_files.py): round trips, poses, lenses, pycolmap, bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision3d_kd.data.colmap import (
    CAMERA_MODELS,
    ColmapCamera,
    ColmapImage,
    ColmapModel,
    c2w_from_colmap,
    colmap_frames,
    colmap_from_c2w,
    colmap_points,
    find_colmap_model,
    read_colmap_model,
    write_colmap_model,
)
from vision3d_kd.data.lens import SUPPORTED_MODELS, Lens
from vision3d_kd.errors import DataError

BAD = Path(__file__).resolve().parent / "bad_inputs"
CHECKED_ENTRIES = ["colmap_unsupported_model", "colmap_missing_image", "colmap_truncated_points",
                   "colmap_text_garbled"]
PARAMS = {  # a plausible parameter list (COLMAP order) for every supported model
    "SIMPLE_PINHOLE": (50.0, 16.0, 12.5), "PINHOLE": (50.0, 52.0, 16.25, 11.75),
    "SIMPLE_RADIAL": (50.0, 16.0, 12.0, 0.01), "RADIAL": (50.0, 16.0, 12.0, 0.01, -0.002),
    "OPENCV": (50.0, 51.0, 16.0, 12.0, 0.01, -0.02, 0.001, -0.0005),
    "OPENCV_FISHEYE": (40.0, 41.0, 16.0, 12.0, 0.05, -0.01, 0.002, -0.001),
}


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _c2w(rng: np.random.Generator) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = _rotation(rng), rng.normal(size=3) * 3
    return c2w


def _model(seed: int = 0, n_points: int = 7) -> ColmapModel:
    """Two cameras (one a model the package cannot undistort: the file formats still hold it), three images
    with keypoints, points with tracks."""
    rng = np.random.default_rng(seed)
    cams = {1: ColmapCamera(1, "OPENCV", 32, 24, PARAMS["OPENCV"]),
            7: ColmapCamera(7, "FULL_OPENCV", 40, 30, tuple(rng.normal(size=12)))}
    point_ids = np.arange(n_points) * 3 + 5
    images, tracks = {}, [[] for _ in range(n_points)]
    for i, cam in ((3, 1), (1, 7), (2, 1)):
        qvec, tvec = colmap_from_c2w(_c2w(rng))
        k = int(rng.integers(0, 6))
        which = rng.integers(-1, n_points, k)  # -1: a keypoint without a 3D point
        for j, w in enumerate(which):
            if w >= 0:
                tracks[w].append((i, j))
        ids = np.where(which >= 0, point_ids[which], -1)
        images[i] = ColmapImage(i, cam, f"img_{i}.png", qvec, tvec, rng.uniform(0, 30, (k, 2)), ids)
    tracks = [np.array(t, np.uint32).reshape(-1, 2) for t in tracks]
    return ColmapModel(cams, images, rng.normal(size=(n_points, 3)), rng.integers(0, 256, (n_points, 3)),
                       rng.uniform(0, 2, n_points), point_ids, tracks)


def _assert_same(a: ColmapModel, b: ColmapModel) -> None:
    assert a.cameras == b.cameras
    assert sorted(a.images) == sorted(b.images)
    for i, im in a.images.items():
        other = b.images[i]
        assert (im.camera_id, im.name) == (other.camera_id, other.name)
        for x, y in ((im.qvec, other.qvec), (im.tvec, other.tvec), (im.xys, other.xys),
                     (im.point3d_ids, other.point3d_ids)):
            np.testing.assert_array_equal(x, y)
    for key in ("points_xyz", "points_rgb", "points_error", "point_ids"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert getattr(a, key).dtype == getattr(b, key).dtype, key
    assert len(a.point_tracks) == len(b.point_tracks)
    for x, y in zip(a.point_tracks, b.point_tracks, strict=True):
        np.testing.assert_array_equal(np.asarray(x).reshape(-1, 2), np.asarray(y).reshape(-1, 2))


def test_binary_and_text_round_trips(tmp_path: Path) -> None:
    model = _model()
    binary = read_colmap_model(write_colmap_model(model, tmp_path / "bin", binary=True))
    text = read_colmap_model(write_colmap_model(model, tmp_path / "txt", binary=False))
    _assert_same(model, binary)
    _assert_same(model, text)
    _assert_same(binary, text)  # text <-> binary lose nothing (floats written with repr)
    again = read_colmap_model(write_colmap_model(text, tmp_path / "bin2", binary=True))
    assert (tmp_path / "bin2" / "images.bin").read_bytes() == (tmp_path / "bin" / "images.bin").read_bytes()
    _assert_same(again, model)


def test_find_colmap_model_order(tmp_path: Path) -> None:
    assert find_colmap_model(tmp_path) is None
    for sub in ("colmap/sparse/0", "sparse", "sparse/0"):
        write_colmap_model(_model(), tmp_path / sub)
        assert find_colmap_model(tmp_path) == tmp_path / sub
    write_colmap_model(_model(), tmp_path / "txt", binary=False)
    assert find_colmap_model(tmp_path / "txt") == tmp_path / "txt"


def _posed_folder(tmp_path: Path, c2ws: list[np.ndarray], cams: dict[int, ColmapCamera], cam_of: list[int],
                  binary: bool = True) -> tuple[Path, Path]:
    images = {}
    (tmp_path / "images").mkdir(exist_ok=True)
    for i, (c2w, cam) in enumerate(zip(c2ws, cam_of, strict=True), start=1):
        qvec, tvec = colmap_from_c2w(c2w)
        images[i] = ColmapImage(i, cam, f"v{i:02d}.png", qvec, tvec)
        Image.new("RGB", (cams[cam].width, cams[cam].height)).save(tmp_path / "images" / f"v{i:02d}.png")
    folder = write_colmap_model(ColmapModel(cams, images, np.zeros((1, 3)), np.zeros((1, 3))),
                                tmp_path / "sparse" / "0", binary)
    return folder, tmp_path / "images"


@pytest.mark.parametrize("binary", [True, False])
def test_known_pose_survives_write_read_frames(tmp_path: Path, binary: bool) -> None:
    rng = np.random.default_rng(1)
    c2ws = [_c2w(rng) for _ in range(5)]
    cams = {1: ColmapCamera(1, "PINHOLE", 32, 24, PARAMS["PINHOLE"])}
    folder, images = _posed_folder(tmp_path, c2ws, cams, [1] * 5, binary)
    frames = colmap_frames(read_colmap_model(folder), images, folder)
    assert [f.label for f in frames] == [f"image v{i:02d}.png" for i in range(1, 6)]
    for f, c2w in zip(frames, c2ws, strict=True):
        assert f.c2w.dtype == np.float64 and f.c2w.shape == (4, 4)
        np.testing.assert_allclose(f.c2w, c2w, atol=1e-6)
        assert f.image.is_file() and f.mask is None
        assert f.lens == Lens("PINHOLE", 32, 24, 50.0, 52.0, 16.25, 11.75)


def test_pose_conventions_by_hand() -> None:
    # identity world-to-camera (OpenCV): camera at the origin looking down +z world, so OpenGL -z = world +z
    c2w = c2w_from_colmap(np.array([1.0, 0, 0, 0]), np.zeros(3))
    np.testing.assert_array_equal(c2w, np.diag([1.0, -1.0, -1.0, 1.0]))
    # a camera at world (1, 2, 3) with identity rotation: t = -R c
    c2w = c2w_from_colmap(np.array([1.0, 0, 0, 0]), np.array([-1.0, -2.0, -3.0]))
    np.testing.assert_allclose(c2w[:3, 3], [1, 2, 3])
    q, t = colmap_from_c2w(c2w)
    np.testing.assert_allclose(q, [1, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(t, [-1, -2, -3], atol=1e-12)


@pytest.mark.parametrize("model", SUPPORTED_MODELS)
def test_supported_models_params_lens_params(tmp_path: Path, model: str) -> None:
    cams = {1: ColmapCamera(1, model, 32, 24, PARAMS[model])}
    folder, images = _posed_folder(tmp_path, [np.eye(4)], cams, [1])
    (lens,) = [f.lens for f in colmap_frames(read_colmap_model(folder), images, folder)]
    assert lens.model == model and lens.to_colmap() == (model, list(PARAMS[model]))
    first_c = 2 if model in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE") else 1  # after fx[, fy]
    assert (lens.cx, lens.cy) == PARAMS[model][first_c:first_c + 2]  # pixel centres agree: no half-pixel shift


@pytest.mark.parametrize("model", [m for _, (m, _) in sorted(CAMERA_MODELS.items()) if m not in SUPPORTED_MODELS])
def test_unsupported_models_are_read_but_refused_by_frames(tmp_path: Path, model: str) -> None:
    n = dict(CAMERA_MODELS.values())[model]
    cams = {1: ColmapCamera(1, "PINHOLE", 32, 24, PARAMS["PINHOLE"]),
            2: ColmapCamera(2, model, 32, 24, tuple(float(i + 10) for i in range(n)))}
    folder, images = _posed_folder(tmp_path, [np.eye(4), np.eye(4)], cams, [1, 2])
    parsed = read_colmap_model(folder)
    assert parsed.cameras == cams
    with pytest.raises(DataError) as info:
        colmap_frames(parsed, images, folder)
    assert str(info.value) == (f"{folder / 'cameras.bin'}: camera 2 uses {model}, which is not supported "
                               f"(supported: {', '.join(SUPPORTED_MODELS)})")


def test_masks_are_found_by_name_or_stem(tmp_path: Path) -> None:
    cams = {1: ColmapCamera(1, "PINHOLE", 32, 24, PARAMS["PINHOLE"])}
    folder, images = _posed_folder(tmp_path, [np.eye(4)] * 3, cams, [1] * 3)
    (tmp_path / "masks").mkdir()
    Image.new("L", (32, 24), 255).save(tmp_path / "masks" / "v01.png.png")
    Image.new("L", (32, 24), 255).save(tmp_path / "masks" / "v02.png")
    frames = colmap_frames(read_colmap_model(folder), images, folder)
    assert [f.mask.name if f.mask else None for f in frames] == ["v01.png.png", "v02.png", None]


def test_colmap_points(tmp_path: Path) -> None:
    model = _model()
    xyz, rgb = colmap_points(read_colmap_model(write_colmap_model(model, tmp_path)))
    assert xyz.dtype == np.float64 and rgb.dtype == np.uint8 and xyz.shape == rgb.shape == (7, 3)
    np.testing.assert_array_equal(xyz, model.points_xyz)
    np.testing.assert_array_equal(rgb, model.points_rgb)


# --------------------------------------------------------------------------------------------- pycolmap


def _pycolmap():
    return pytest.importorskip("pycolmap", reason="pycolmap is not installed; interoperability unchecked")


def _pycolmap_pose(image) -> tuple[np.ndarray, np.ndarray]:
    rigid = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
    x, y, z, w = rigid.rotation.quat
    return np.array([w, x, y, z]), np.asarray(rigid.translation)


@pytest.mark.parametrize("binary", [True, False])
def test_pycolmap_reads_what_we_write(tmp_path: Path, binary: bool) -> None:
    pycolmap = _pycolmap()
    model = _model(seed=3)
    write_colmap_model(model, tmp_path, binary=binary)
    rec = pycolmap.Reconstruction(str(tmp_path))
    assert rec.num_cameras() == 2 and rec.num_images() == 3 and rec.num_points3D() == 7
    for cam in model.cameras.values():
        theirs = rec.cameras[cam.id]
        assert (theirs.model.name, theirs.width, theirs.height) == (cam.model, cam.width, cam.height)
        np.testing.assert_allclose(theirs.params, cam.params, rtol=0, atol=0)
    for im in model.images.values():
        theirs = rec.images[im.id]
        assert (theirs.name, theirs.camera_id) == (im.name, im.camera_id)
        qvec, tvec = _pycolmap_pose(theirs)
        np.testing.assert_allclose(qvec * np.sign(qvec[0] * im.qvec[0]), im.qvec, atol=1e-12)
        np.testing.assert_allclose(tvec, im.tvec, atol=1e-12)
        # their camera centre is our OpenGL c2w's translation
        np.testing.assert_allclose(theirs.projection_center(), c2w_from_colmap(im.qvec, im.tvec)[:3, 3], atol=1e-9)
    for i, pid in enumerate(model.point_ids):
        np.testing.assert_allclose(rec.points3D[int(pid)].xyz, model.points_xyz[i])
        np.testing.assert_array_equal(rec.points3D[int(pid)].color, model.points_rgb[i])
        assert rec.points3D[int(pid)].track.length() == len(model.point_tracks[i])


def test_we_read_what_pycolmap_writes(tmp_path: Path) -> None:
    pycolmap = _pycolmap()
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera.create_from_model_name(4, "OPENCV", 40.0, 32, 24))
    rng = np.random.default_rng(5)
    poses = {}
    for i in (1, 2):
        rot, t = _rotation(rng), rng.normal(size=3)
        rigid = pycolmap.Rigid3d(pycolmap.Rotation3d(rot), t)
        rec.add_image_with_trivial_frame(pycolmap.Image(name=f"{i}.png", camera_id=4, image_id=i), rigid)
        poses[i] = (rot, t)
    rec.add_point3D(np.array([1.0, 2.0, 3.0]), pycolmap.Track(), np.array([9, 8, 7], np.uint8))
    for binary in (True, False):
        out = tmp_path / str(binary)
        out.mkdir()
        rec.write_binary(str(out)) if binary else rec.write_text(str(out))
        ours = read_colmap_model(out)
        assert ours.cameras[4].model == "OPENCV" and ours.cameras[4].params == tuple(rec.cameras[4].params)
        for i, (rot, t) in poses.items():
            c2w = c2w_from_colmap(ours.images[i].qvec, ours.images[i].tvec)
            np.testing.assert_allclose(c2w[:3, :3], rot.T @ np.diag([1.0, -1.0, -1.0]), atol=1e-9)
            np.testing.assert_allclose(c2w[:3, 3], -rot.T @ t, atol=1e-9)
        np.testing.assert_allclose(ours.points_xyz, [[1.0, 2.0, 3.0]])
        np.testing.assert_array_equal(ours.points_rgb, [[9, 8, 7]])


# --------------------------------------------------------------------------------------------- bad input


def _one_line(info: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


def test_bad_binary_files(tmp_path: Path) -> None:
    folder = write_colmap_model(_model(), tmp_path)
    cams = folder / "cameras.bin"
    good = cams.read_bytes()
    cams.write_bytes(good[:8] + struct.pack("<Ii", 1, 42) + good[16:])  # first camera: model id 42
    with pytest.raises(DataError) as info:
        read_colmap_model(folder)
    assert "unknown model id 42" in _one_line(info, cams)
    cams.write_bytes(good + b"\0")
    with pytest.raises(DataError, match="unexpected bytes"):
        read_colmap_model(folder)
    cams.write_bytes(struct.pack("<Q", 2**62) + good[8:])  # absurd count: refused before any allocation
    with pytest.raises(DataError) as info:
        read_colmap_model(folder)
    assert "truncated" in _one_line(info, cams)
    cams.write_bytes(good)
    model = _model()
    model.images[3].camera_id = 99
    model.points_xyz[2, 1] = np.nan
    write_colmap_model(model, folder)
    with pytest.raises(DataError) as info:
        read_colmap_model(folder)
    assert "uses camera 99" in _one_line(info, folder / "images.bin")
    model.images[3].camera_id = 1
    write_colmap_model(model, folder)
    with pytest.raises(DataError) as info:
        read_colmap_model(folder)
    assert "NaN" in _one_line(info, folder / "points3D.bin")


def test_bad_text_files(tmp_path: Path) -> None:
    folder = write_colmap_model(_model(), tmp_path, binary=False)
    cams = folder / "cameras.txt"
    good = cams.read_text()
    for bad, words in (("1 OPENCV 32 24 1 2 3\n", "needs 8 parameters"), ("1 WHATEVER 32 24 1\n", "unknown camera"),
                       ("1 PINHOLE 32 24 nan 1 2 3\n", "NaN")):
        cams.write_text(good + bad.replace("1 ", "9 ", 1))
        with pytest.raises(DataError) as info:
            read_colmap_model(folder)
        assert words in _one_line(info, cams)
    cams.write_text(good)
    (folder / "points3D.txt").unlink()
    with pytest.raises(DataError) as info:
        read_colmap_model(folder)
    assert "does not exist" in _one_line(info, folder / "points3D.txt")


@pytest.mark.parametrize("entry", CHECKED_ENTRIES)
def test_bad_input_corpus(entry: str) -> None:
    root = BAD / entry
    with pytest.raises(DataError) as info:
        folder = find_colmap_model(root)
        assert folder is not None
        colmap_frames(read_colmap_model(folder), root / "images", folder)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    named = Path(msg.split(": ")[0])
    assert named.is_relative_to(root) and named.exists(), msg


def test_bad_input_corpus_messages() -> None:
    root = BAD / "colmap_unsupported_model"
    folder = root / "sparse" / "0"
    with pytest.raises(DataError, match="camera 2 uses FOV, which is not supported"):
        colmap_frames(read_colmap_model(folder), root / "images", folder)
    root = BAD / "colmap_missing_image"
    with pytest.raises(DataError, match=f"{root / 'images' / 'b.png'} does not exist"):
        colmap_frames(read_colmap_model(root / "sparse" / "0"), root / "images", root / "sparse" / "0")
    root = BAD / "colmap_inconsistent_size"  # documented: the image decoder, not colmap_frames, checks sizes
    frames = colmap_frames(read_colmap_model(root / "sparse" / "0"), root / "images", root / "sparse" / "0")
    assert frames[0].lens.width == 64 and Image.open(frames[0].image).size == (32, 24)
    readme = (BAD / "README.md").read_text()
    assert all(f"| {e}/ |" in readme for e in [*CHECKED_ENTRIES, "colmap_inconsistent_size"])
