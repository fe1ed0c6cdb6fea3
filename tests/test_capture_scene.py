"""Simulated hand-held captures: exact lens rays, the room, poses, mixed image sizes and sparse points."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vision3d_kd.cameras import look_at
from vision3d_kd.data.capture_io import CapturedFrame
from vision3d_kd.data.capture_scene import (
    capture_lenses,
    capture_poses,
    render_capture,
    render_view,
    sparse_points,
)
from vision3d_kd.data.lens import Lens
from vision3d_kd.data.lens_rays import lens_rays, project, undistort_normalized
from vision3d_kd.data.procedural import Shading
from vision3d_kd.data.room import CaptureScene, Room, value_noise
from vision3d_kd.data.sdf import scene_sdf
from vision3d_kd.data.undistort import distort_normalized


def _opencv_pose(c2w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(rvec, tvec) of the OpenCV world-to-camera pose of an OpenGL c2w [4, 4]."""
    c2w_cv = c2w.double().numpy() @ np.diag([1.0, -1.0, -1.0, 1.0])
    w2c = np.linalg.inv(c2w_cv)
    return cv2.Rodrigues(w2c[:3, :3])[0], w2c[:3, 3].copy()


def _cv_project(lens: Lens, c2w: torch.Tensor, x: np.ndarray) -> np.ndarray:
    """cv2.projectPoints in the package's pixel convention (pixel centres at +0.5): [M, 2]."""
    rvec, tvec = _opencv_pose(c2w)
    pix, _ = cv2.projectPoints(x.reshape(-1, 1, 3), rvec, tvec, lens.opencv_K(), lens.opencv_dist())
    return pix.reshape(-1, 2) + 0.5


@pytest.fixture(scope="module")
def small_capture() -> tuple[CaptureScene, list[CapturedFrame]]:
    scene = CaptureScene(scene_sdf("composite"), Room(seed=1))
    return scene, render_capture(scene, n_views=9, supersample=1, seed=1, scale=0.25)


def test_undistort_inverts_distort_and_matches_opencv() -> None:
    lens = capture_lenses()[0]
    gen = torch.Generator().manual_seed(0)
    xy_d = (torch.rand(500, 2, generator=gen, dtype=torch.float64) - 0.5) * torch.tensor([1.3, 1.0])
    xy = undistort_normalized(xy_d, lens)
    xd, yd = distort_normalized(lens, xy[:, 0].numpy(), xy[:, 1].numpy())
    assert np.abs(np.stack([xd, yd], -1) - xy_d.numpy()).max() < 1e-12
    pts = xy_d.numpy() * [lens.fx, lens.fy] + [lens.cx - 0.5, lens.cy - 0.5]
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    ref = cv2.undistortPoints(pts.reshape(-1, 1, 2), lens.opencv_K(), lens.opencv_dist(), criteria=crit)
    assert np.abs(ref.reshape(-1, 2) - xy.numpy()).max() < 1e-7
    assert (xy - xy_d).abs().max() > 0.01  # the lens really distorts


def test_lens_rays_and_project_agree_with_opencv() -> None:
    lens = capture_lenses()[1]
    c2w = capture_poses(5, seed=2)[3]
    gen = torch.Generator().manual_seed(1)
    px = torch.rand(300, generator=gen, dtype=torch.float64) * lens.width
    py = torch.rand(300, generator=gen, dtype=torch.float64) * lens.height
    o, d = lens_rays(lens, c2w, px, py)
    assert torch.allclose(d.norm(dim=-1), torch.ones(300, dtype=torch.float64))
    x = o + (1.0 + 4.0 * torch.rand(300, 1, generator=gen, dtype=torch.float64)) * d
    ref = _cv_project(lens, c2w, x.numpy())
    assert np.abs(ref - np.stack([px.numpy(), py.numpy()], -1)).max() < 1e-6
    pix, z = project(lens, c2w, x)
    assert np.abs(pix.numpy() - ref).max() < 1e-6 and (z > 0).all()


class _FlatRoom(Room):
    """A room with a white floor and black walls and ceiling, so its edges are visible as steps."""

    def albedo(self, x: torch.Tensor) -> torch.Tensor:
        return (self.face(x) == 4).to(x.dtype)[:, None].expand(len(x), 3).clone()


def test_rendered_floor_edge_is_the_distorted_projection_of_a_straight_line() -> None:
    lens = capture_lenses()[0]
    room = _FlatRoom()
    scene = CaptureScene(scene_sdf("sphere"), room)
    eye = torch.tensor([2.5, 0.0, 0.0], dtype=torch.float64)
    c2w = look_at(eye, torch.tensor([5.5, 0.4, 0.15], dtype=torch.float64), "+z")
    rgb = render_view(scene, lens, c2w, supersample=4, shading=Shading(ambient=1.0))[..., 0].double().numpy()
    # the floor (white) lies below the edge in every column: the edge row = height - floor coverage
    edge_rows = lens.height - rgb.sum(axis=0)
    wall_x, floor_z = room.center[0] + room.half_size[0], room.center[2] - room.half_size[2]
    line = np.stack([np.full(4001, wall_x), np.linspace(-4, 4, 4001), np.full(4001, floor_z)], -1)
    curve = _cv_project(lens, c2w, line)
    curve = curve[np.argsort(curve[:, 0])]
    cols = np.arange(lens.width) + 0.5
    expected = np.interp(cols, curve[:, 0], curve[:, 1])
    assert np.abs(edge_rows - expected).max() < 0.25
    # the curve is visibly bent (a pinhole projection of the same line is straight and misses by > 1 px)
    chord = np.interp(cols, [cols[0], cols[-1]], [expected[0], expected[-1]])
    assert np.abs(expected - chord).max() > 1.0
    pinhole = Lens("PINHOLE", lens.width, lens.height, lens.fx, lens.fy, lens.cx, lens.cy)
    straight = _cv_project(pinhole, c2w, line)
    straight = straight[np.argsort(straight[:, 0])]
    assert np.abs(np.interp(cols, straight[:, 0], straight[:, 1]) - edge_rows).max() > 1.0


def test_room_sdf_faces_and_textures() -> None:
    room = Room()
    x = torch.tensor([[0.0, 0.0, -1.0], [5.5, 1.0, 2.0], [0.0, -5.5, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 2.0]])
    assert torch.allclose(room.sdf(x), torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0]))
    assert room.face(x[:4]).tolist() == [4, 1, 2, 5]
    assert torch.allclose(room.normal(x[:1]), torch.tensor([[0.0, 0.0, 1.0]]))
    gen = torch.Generator().manual_seed(0)
    uv = torch.rand(4000, 2, generator=gen) * 10
    noise = value_noise(uv, 3)
    assert 0.0 <= float(noise.min()) and float(noise.max()) <= 1.0 and float(noise.std()) > 0.1
    floor = torch.cat([uv - 5.0, torch.full((4000, 1), -1.0)], dim=-1)
    albedo = room.albedo(floor)
    assert albedo.min() >= 0 and albedo.max() <= 1 and float(albedo.std(dim=0).min()) > 0.1  # varied colours
    assert Room.from_dict(room.to_dict()) == room


def test_poses_are_handheld_inside_the_room() -> None:
    poses = capture_poses(72, seed=0)
    room = Room()
    eye = poses[:, :3, 3]
    assert (room.sdf(eye) > 1.0).all()
    dist = eye.norm(dim=-1)
    assert dist.min() > 2.5 and dist.max() < 3.5
    rot = poses[:, :3, :3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3, dtype=torch.float64).expand(72, 3, 3), atol=1e-9)
    forward = -rot[:, :, 2]
    off_centre = torch.rad2deg(torch.acos((forward * (-eye / dist[:, None])).sum(-1).clamp(-1, 1)))
    assert off_centre.max() < 8.0 and off_centre.mean() > 0.3  # near, not exactly at, the centre
    roll = torch.rad2deg(torch.atan2(rot[:, 2, 0], rot[:, 2, 1]))  # world z in the camera's x/y plane
    assert roll.abs().max() < 10.0 and roll.std() > 1.0
    elev = torch.rad2deg(torch.asin(eye[:, 2] / dist))
    assert elev.min() > 0.0 and elev.max() - elev.min() > 15.0


def test_mixed_sizes_and_distorted_lenses(small_capture: tuple[CaptureScene, list[CapturedFrame]]) -> None:
    _, views = small_capture
    sizes = {(v.lens.width, v.lens.height) for v in views}
    assert sizes == {(40, 30), (30, 40)}
    for v in views:
        assert v.rgb.dtype == np.uint8 and v.rgb.shape == (v.lens.height, v.lens.width, 3)
        assert v.lens.model == "OPENCV" and v.lens.is_distorted
        assert v.c2w.dtype == np.float64 and v.c2w.shape == (4, 4)
        assert v.rgb.std() > 20  # textured, nothing left black


def test_sparse_points_lie_on_surfaces_and_project_into_their_views(
    small_capture: tuple[CaptureScene, list[CapturedFrame]],
) -> None:
    scene, views = small_capture
    pts = sparse_points(scene, views, n_points=400, seed=0)
    assert 300 <= len(pts.xyz) <= 400 and pts.rgb.dtype == np.uint8 and pts.rgb.shape == pts.xyz.shape
    x = torch.from_numpy(pts.xyz)
    assert scene.sdf(x).abs().max() < 1e-3
    on_object = scene.obj.sdf(x).abs() < 1e-3
    assert 0.05 < float(on_object.double().mean()) < 0.95  # object and room points
    assert (pts.visible.sum(axis=1) >= 2).all()
    for j, v in enumerate(views):
        seen = torch.from_numpy(pts.visible[:, j])
        pix, z = project(v.lens, torch.from_numpy(v.c2w), x[seen])
        assert (z > 0).all() and (pix >= 0).all()
        assert (pix[:, 0] < v.lens.width).all() and (pix[:, 1] < v.lens.height).all()


def test_capture_cameras_see_the_object(small_capture: tuple[CaptureScene, list[CapturedFrame]]) -> None:
    _, views = small_capture
    for v in views:
        pix, z = project(v.lens, torch.from_numpy(v.c2w), torch.zeros(1, 3, dtype=torch.float64))
        assert z[0] > 2.0
        assert 0.25 * v.lens.width < pix[0, 0] < 0.75 * v.lens.width
        assert 0.25 * v.lens.height < pix[0, 1] < 0.75 * v.lens.height
    assert math.isfinite(float(views[0].rgb.mean()))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from vision3d_kd.cli.data import data_app

    out = tmp_path_factory.mktemp("capture") / "torus"
    args = ["scene", "torus", "--capture", "--out", str(out), "--n-views", "6", "--n-points", "200",
            "--scale", "0.25", "--supersample", "1", "--seed", "2"]
    res = CliRunner().invoke(data_app, args)
    assert res.exit_code == 0, res.output
    return out


def test_written_colmap_model_has_the_lenses_and_poses(written: Path) -> None:
    pycolmap = pytest.importorskip("pycolmap")

    rec = pycolmap.Reconstruction(str(written / "sparse" / "0"))
    lenses = capture_lenses(0.25)
    assert len(rec.cameras) == 2 and len(rec.images) == 6 and 150 <= len(rec.points3D) <= 200
    by_size = {(lens.width, lens.height): lens for lens in lenses}
    for cam in rec.cameras.values():
        lens = by_size[(cam.width, cam.height)]
        assert cam.model.name == "OPENCV"
        assert np.allclose(cam.params, lens.to_colmap()[1])
    poses = capture_poses(6, seed=2)
    for img in rec.images.values():
        i = int(img.name.split("_")[1].split(".")[0])
        c2w = poses[i].numpy()
        assert np.allclose(img.projection_center(), c2w[:3, 3], atol=1e-6)
        # COLMAP's camera +z (forward) is OpenGL's -z
        rot_w2c = img.cam_from_world().rotation.matrix()
        assert np.allclose(rot_w2c.T[:, 2], -c2w[:3, 2], atol=1e-6)
        assert (rec.cameras[img.camera_id].width, rec.cameras[img.camera_id].height) == (
            (lenses[1].width, lenses[1].height) if i % 3 == 2 else (lenses[0].width, lenses[0].height))


def test_written_transforms_json_and_scene_json(written: Path) -> None:
    from vision3d_kd.data import load_dataset, load_scene_sdf

    meta = json.loads((written / "transforms.json").read_text())
    assert meta["scene"] == "torus" and meta["camera_model"] == "OPENCV"
    assert {(d["width"], d["height"]) for d in meta["capture"]["distortion"]} == {(40, 30), (30, 40)}
    assert Room.from_dict(meta["capture"]["room"]) == Room(seed=2)
    poses = capture_poses(6, seed=2)
    for i, frame in enumerate(meta["frames"]):
        lens = capture_lenses(0.25)[1 if i % 3 == 2 else 0]
        assert np.allclose(frame["transform_matrix"], poses[i].numpy())
        assert (frame["w"], frame["h"], frame["fl_x"], frame["cx"], frame["k1"], frame["p2"]) == (
            lens.width, lens.height, lens.fx, lens.cx, lens.dist[0], lens.dist[3])
        assert (written / frame["file_path"]).is_file()
    scene = CaptureScene.from_dict(json.loads((written / "scene.json").read_text()))
    assert scene.room == Room(seed=2) and load_scene_sdf(written).name == "torus"
    assert len(load_dataset(written, "train")) >= 4  # the package's own loader reads it (undistorted)


def test_cli_capture_refuses_options_it_would_ignore(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vision3d_kd.cli.data import data_app
    from vision3d_kd.cli.main import main

    for args in (["--capture", "--size", "8"], ["--n-views", "5"]):
        with pytest.raises(SystemExit) as exc:
            main(["data", "scene", "box", "--out", str(tmp_path / "x"), *args])
        assert exc.value.code == 2
    assert not (tmp_path / "x").exists()
    help_text = CliRunner().invoke(data_app, ["scene", "--help"]).output
    for flag in ("--capture", "--n-views", "--n-points", "--scale"):
        assert flag in help_text

