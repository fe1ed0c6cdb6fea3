"""COLMAP sparse-model files, binary and text: parsing and serialising (no pycolmap needed).

Layouts follow COLMAP's documented formats (little-endian binary):
``cameras.bin``  u64 count, then per camera: u32 id, i32 model id, u64 width, u64 height, f64 params[n(model)];
``images.bin``   u64 count, then per image: u32 id, f64 qvec[4] (w,x,y,z), f64 tvec[3], u32 camera id,
                 NUL-terminated name, u64 n, then n x (f64 x, f64 y, i64 point3D id; -1 = none);
``points3D.bin`` u64 count, then per point: u64 id, f64 xyz[3], u8 rgb[3], f64 error, u64 n, then
                 n x (u32 image id, u32 point2D index).
The ``.txt`` twins hold the same values, one line per camera / point and two lines per image.
Every malformed input raises a one-line DataError "PATH: problem".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .frames import data_error

__all__ = [
    "CAMERA_MODELS", "MODEL_IDS", "ColmapCamera", "ColmapImage", "ColmapModel",
    "parse_cameras_bin", "parse_images_bin", "parse_points_bin", "parse_cameras_txt", "parse_images_txt",
    "parse_points_txt", "cameras_bin", "images_bin", "points_bin", "cameras_txt", "images_txt", "points_txt",
]

# COLMAP model id -> (name, number of params); ids 0..10 are the classic table, 11..17 newer COLMAP releases.
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
    12: ("SIMPLE_DIVISION", 4), 13: ("DIVISION", 5), 14: ("SIMPLE_FISHEYE", 3), 15: ("FISHEYE", 4),
    16: ("EUCM", 6), 17: ("EQUIRECTANGULAR", 2),
}
MODEL_IDS: dict[str, int] = {name: i for i, (name, _) in CAMERA_MODELS.items()}
_N_PARAMS = {name: n for name, n in CAMERA_MODELS.values()}
_OBS = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])
_TRACK = np.dtype([("image", "<u4"), ("point2d", "<u4")])


@dataclass(frozen=True)
class ColmapCamera:
    """One COLMAP camera: ``model`` a name of CAMERA_MODELS, image size in pixels, ``params`` in COLMAP's order."""

    id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass(eq=False)
class ColmapImage:
    """One registered image: world-to-camera pose (OpenCV axes) as ``qvec`` [4] (w,x,y,z) and ``tvec`` [3];
    optional keypoints ``xys`` [K,2] (pixels) with ``point3d_ids`` [K] int64 (-1 = no 3D point)."""

    id: int
    camera_id: int
    name: str
    qvec: np.ndarray
    tvec: np.ndarray
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(eq=False)
class ColmapModel:
    """A sparse model: cameras and images by id; points ``points_xyz`` [P,3] float64 (COLMAP world frame),
    ``points_rgb`` [P,3] uint8, ``points_error`` [P] float64 (pixels, -1 = unknown), ``point_ids`` [P] int64
    (default 1..P) and ``point_tracks`` (P arrays [L,2] of (image id, point2D index); default empty)."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    points_rgb: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))
    points_error: np.ndarray | None = None
    point_ids: np.ndarray | None = None
    point_tracks: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = len(self.points_xyz)
        self.points_xyz = np.asarray(self.points_xyz, np.float64).reshape(n, 3)
        self.points_rgb = np.asarray(self.points_rgb, np.uint8).reshape(n, 3)
        self.points_error = np.full(n, -1.0) if self.points_error is None else np.asarray(self.points_error, float)
        self.point_ids = np.arange(1, n + 1) if self.point_ids is None else np.asarray(self.point_ids, np.int64)
        if self.point_tracks is None:
            self.point_tracks = [np.zeros((0, 2), np.uint32) for _ in range(n)]
        if not (len(self.points_error) == len(self.point_ids) == len(self.point_tracks) == n):
            raise ValueError("points_xyz, points_rgb, points_error, point_ids and point_tracks differ in length")


# ------------------------------------------------------------------------------------------------ binary


class _Cursor:
    """Reads little-endian records from a whole file's bytes; running short is a DataError."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos = path, 0
        try:
            self.data = path.read_bytes()
        except OSError as e:
            raise data_error(path, f"cannot read ({e.strerror})") from None

    def truncated(self, what: str) -> Exception:
        return data_error(self.path, f"truncated or garbled: the file ({len(self.data)} bytes) ends inside {what}")

    def take(self, fmt: str, what: str) -> tuple:
        s = struct.Struct("<" + fmt)
        if self.pos + s.size > len(self.data):
            raise self.truncated(what)
        values = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return values

    def count(self, record_bytes: int, what: str) -> int:
        (n,) = self.take("Q", f"the number of {what}")
        if n * record_bytes > len(self.data) - self.pos:
            raise self.truncated(f"the {n} {what}")
        return n

    def array(self, dtype: np.dtype, n: int, what: str) -> np.ndarray:
        end = self.pos + n * dtype.itemsize
        if end > len(self.data):
            raise self.truncated(what)
        out = np.frombuffer(self.data, dtype, n, self.pos).copy()
        self.pos = end
        return out

    def name(self, what: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.truncated(what)
        raw, self.pos = self.data[self.pos:end], end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise data_error(self.path, f"garbled {what} (not UTF-8)") from None

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise data_error(self.path, f"garbled: {len(self.data) - self.pos} unexpected bytes after the last record")


def parse_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    """Cameras by id from ``cameras.bin``."""
    cur, cams = _Cursor(path), {}
    for _ in range(cur.count(24, "cameras")):
        cam_id, model_id, width, height = cur.take("IiQQ", "a camera record")
        if model_id not in CAMERA_MODELS:
            raise data_error(path, f"camera {cam_id} has unknown model id {model_id} (COLMAP knows 0..17)")
        name, n = CAMERA_MODELS[model_id]
        params = cur.take(f"{n}d", f"camera {cam_id} parameters")
        _add(cams, cam_id, ColmapCamera(cam_id, name, width, height, tuple(params)), path, "camera")
    cur.finish()
    return cams


def parse_images_bin(path: Path) -> dict[int, ColmapImage]:
    """Images by id from ``images.bin`` (keypoints kept)."""
    cur, images = _Cursor(path), {}
    for _ in range(cur.count(73, "images")):
        rec = cur.take("I7dI", "an image record")
        name = cur.name(f"image {rec[0]} name")
        obs = cur.array(_OBS, cur.count(_OBS.itemsize, f"keypoints of image {rec[0]}"), f"image {rec[0]} keypoints")
        image = ColmapImage(rec[0], rec[8], name, np.array(rec[1:5]), np.array(rec[5:8]), obs["xy"], obs["id"])
        _add(images, rec[0], image, path, "image")
    cur.finish()
    return images


def parse_points_bin(path: Path) -> tuple:
    """(ids [P], xyz [P,3], rgb [P,3] uint8, error [P], tracks) from ``points3D.bin``."""
    cur = _Cursor(path)
    n = cur.count(51, "points")
    ids, xyz, rgb, err, tracks = np.zeros(n, np.int64), np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n), []
    for i in range(n):
        rec = cur.take("Q3d3BdQ", "a point record")
        ids[i], xyz[i], rgb[i], err[i] = rec[0], rec[1:4], rec[4:7], rec[7]
        if rec[8] * 8 > len(cur.data) - cur.pos:
            raise cur.truncated(f"track of point {rec[0]}")
        track = cur.array(_TRACK, rec[8], f"track of point {rec[0]}")
        tracks.append(np.stack([track["image"], track["point2d"]], 1))
    cur.finish()
    return ids, xyz, rgb, err, tracks


def cameras_bin(cameras: dict[int, ColmapCamera]) -> bytes:
    """``cameras.bin`` bytes."""
    out = [struct.pack("<Q", len(cameras))]
    for c in cameras.values():
        out.append(struct.pack(f"<IiQQ{len(c.params)}d", c.id, MODEL_IDS[c.model], c.width, c.height, *c.params))
    return b"".join(out)


def images_bin(images: dict[int, ColmapImage]) -> bytes:
    """``images.bin`` bytes."""
    out = [struct.pack("<Q", len(images))]
    for im in images.values():
        out.append(struct.pack("<I7dI", im.id, *im.qvec, *im.tvec, im.camera_id))
        obs = np.zeros(len(im.xys), _OBS)
        obs["xy"], obs["id"] = im.xys, im.point3d_ids
        out += [im.name.encode("utf-8") + b"\0", struct.pack("<Q", len(obs)), obs.tobytes()]
    return b"".join(out)


def points_bin(model: ColmapModel) -> bytes:
    """``points3D.bin`` bytes."""
    out = [struct.pack("<Q", len(model.points_xyz))]
    for i in range(len(model.points_xyz)):
        track = np.asarray(model.point_tracks[i], "<u4").reshape(-1, 2)
        out.append(struct.pack("<Q3d3BdQ", model.point_ids[i], *model.points_xyz[i], *model.points_rgb[i],
                               model.points_error[i], len(track)))
        out.append(track.tobytes())
    return b"".join(out)


def _add(table: dict, key: int, value: object, path: Path, what: str) -> None:
    if key in table:
        raise data_error(path, f"{what} id {key} appears twice")
    table[key] = value


# ------------------------------------------------------------------------------------------------ text


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of a text file, comment lines dropped (blank lines kept for images.txt)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise data_error(path, f"cannot read ({e})") from None
    return [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if not ln.lstrip().startswith("#")]


def _numbers(tokens: list[str], kind: type, path: Path, line: int, what: str) -> list:
    try:
        return [kind(t) for t in tokens]
    except ValueError:
        raise data_error(path, f"line {line}: non-numeric value in {what}: {' '.join(tokens)[:60]!r}") from None


def parse_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    """Cameras by id from ``cameras.txt`` (``ID MODEL WIDTH HEIGHT PARAMS...``)."""
    cams: dict[int, ColmapCamera] = {}
    for n, line in _data_lines(path):
        if not line:
            continue
        tok = line.split()
        if len(tok) < 4 or tok[1] not in _N_PARAMS:
            what = f"unknown camera model {tok[1]!r}" if len(tok) >= 4 else "expected ID MODEL WIDTH HEIGHT PARAMS"
            raise data_error(path, f"line {n}: {what}")
        cam_id, width, height = _numbers([tok[0], tok[2], tok[3]], int, path, n, "camera id / size")
        params = _numbers(tok[4:], float, path, n, "camera parameters")
        if len(params) != _N_PARAMS[tok[1]]:
            raise data_error(path, f"line {n}: {tok[1]} needs {_N_PARAMS[tok[1]]} parameters, got {len(params)}")
        _add(cams, cam_id, ColmapCamera(cam_id, tok[1], width, height, tuple(params)), path, "camera")
    return cams


def parse_images_txt(path: Path) -> dict[int, ColmapImage]:
    """Images by id from ``images.txt`` (pose line, then a keypoint line ``X Y POINT3D_ID ...``, maybe empty)."""
    lines, images, i = _data_lines(path), {}, 0
    while i < len(lines):
        n, line = lines[i]
        i += 1
        if not line:
            continue
        tok = line.split()
        if len(tok) < 10:
            raise data_error(path, f"line {n}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        image_id, cam_id = _numbers([tok[0], tok[8]], int, path, n, "image / camera id")
        pose = np.array(_numbers(tok[1:8], float, path, n, "image pose"))
        obs_line, obs_tok = (lines[i][0], lines[i][1].split()) if i < len(lines) else (n + 1, [])
        i += 1  # the keypoint line follows its pose line, even when empty
        if len(obs_tok) % 3:
            raise data_error(path, f"line {obs_line}: keypoint line needs X Y POINT3D_ID triples")
        obs = np.array(_numbers(obs_tok, float, path, obs_line, "keypoints")).reshape(-1, 3)
        if not np.isfinite(obs).all() or (obs[:, 2] != np.round(obs[:, 2])).any():
            raise data_error(path, f"line {obs_line}: keypoints of image {image_id} hold NaN, inf or a non-integer id")
        image = ColmapImage(image_id, cam_id, " ".join(tok[9:]), pose[:4], pose[4:], obs[:, :2],
                            obs[:, 2].astype(np.int64))
        _add(images, image_id, image, path, "image")
    return images


def parse_points_txt(path: Path) -> tuple:
    """(ids [P], xyz [P,3], rgb [P,3] uint8, error [P], tracks) from ``points3D.txt``."""
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for n, line in _data_lines(path):
        if not line:
            continue
        tok = line.split()
        if len(tok) < 8 or (len(tok) - 8) % 2:
            raise data_error(path, f"line {n}: expected POINT3D_ID X Y Z R G B ERROR (IMAGE_ID POINT2D_IDX)...")
        ints = _numbers([tok[0], *tok[4:7], *tok[8:]], int, path, n, "point id / colour / track")
        floats = _numbers([*tok[1:4], tok[7]], float, path, n, "point position / error")
        if not all(0 <= v <= 255 for v in ints[1:4]) or any(v < 0 for v in ints[4:]):
            raise data_error(path, f"line {n}: colour outside 0..255 or a negative track index")
        ids.append(ints[0])
        xyz.append(floats[:3])
        rgb.append(ints[1:4])
        err.append(floats[3])
        tracks.append(np.array(ints[4:], np.uint32).reshape(-1, 2))
    return (np.array(ids, np.int64), np.array(xyz, np.float64).reshape(-1, 3), np.array(rgb, np.uint8).reshape(-1, 3),
            np.array(err, np.float64), tracks)


def _fmt(values: object) -> str:
    return " ".join(repr(float(v)) for v in values)


def cameras_txt(cameras: dict[int, ColmapCamera]) -> str:
    """``cameras.txt`` text."""
    head = f"# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n" \
           f"# Number of cameras: {len(cameras)}\n"
    return head + "".join(f"{c.id} {c.model} {c.width} {c.height} {_fmt(c.params)}\n" for c in cameras.values())


def images_txt(images: dict[int, ColmapImage]) -> str:
    """``images.txt`` text."""
    out = ["# Image list with two lines of data per image:\n#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, "
           f"NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)\n# Number of images: {len(images)}\n"]
    for im in images.values():
        out.append(f"{im.id} {_fmt(im.qvec)} {_fmt(im.tvec)} {im.camera_id} {im.name}\n")
        out.append(" ".join(f"{float(x)!r} {float(y)!r} {int(p)}" for (x, y), p in zip(im.xys, im.point3d_ids,
                                                                                   strict=True)) + "\n")
    return "".join(out)


def points_txt(model: ColmapModel) -> str:
    """``points3D.txt`` text."""
    out = ["# 3D point list with one line of data per point:\n#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, "
           f"TRACK[] as (IMAGE_ID, POINT2D_IDX)\n# Number of points: {len(model.points_xyz)}\n"]
    for i in range(len(model.points_xyz)):
        track = " ".join(str(int(v)) for v in np.asarray(model.point_tracks[i]).reshape(-1))
        rgb = " ".join(str(int(v)) for v in model.points_rgb[i])
        out.append(f"{int(model.point_ids[i])} {_fmt(model.points_xyz[i])} {rgb} {float(model.points_error[i])!r}"
                   f"{' ' + track if track else ''}\n")
    return "".join(out)
