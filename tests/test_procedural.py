"""Procedural SDF scenes: primitives, sphere-traced ground truth, scene folders and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vision3d_kd.cameras import image_rays
from vision3d_kd.data import load_dataset
from vision3d_kd.data.procedural import SCENE_NAMES, load_scene_sdf, scene_sdf, sphere_trace, write_scene
from vision3d_kd.data.sdf import Box, Cone, Cylinder, SDFScene, Sphere, Torus
from vision3d_kd.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def composite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("proc") / "composite"
    return write_scene("composite", out, n_train=6, n_test=3, size=24, seed=3)


def test_primitive_distances_by_hand() -> None:
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert torch.allclose(Sphere(radius=1.0).sdf(x), torch.tensor([1.0, -1.0, 2.0]))
    assert torch.allclose(Box(half_size=(1.0, 1.0, 1.0)).sdf(x), torch.tensor([1.0, -1.0, 2.0]))
    corner = torch.tensor([[2.0, 2.0, 1.0]])
    assert torch.allclose(Box(half_size=(1.0, 1.0, 1.0)).sdf(corner), torch.tensor([2**0.5]))
    assert torch.allclose(Torus(major=1.0, minor=0.25).sdf(x), torch.tensor([0.75, 0.75, 10**0.5 - 0.25]))
    assert torch.allclose(Cylinder(radius=0.5, half_height=1.0).sdf(x), torch.tensor([1.5, -0.5, 2.0]))
    cone = Cone(radius=1.0, height=2.0)  # base at z=-1, apex at z=+1
    pts = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = torch.tensor([1.0, 1.0, 0.0, -(2 / 5**0.5) * 0.5])
    assert torch.allclose(cone.sdf(pts), expected, atol=1e-6)


def test_sdf_is_a_distance_along_random_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    for name in SCENE_NAMES:
        scene = scene_sdf(name)
        x = (torch.rand(2000, 3, generator=gen) - 0.5) * 3.0
        grad = scene.normal(x)
        assert torch.allclose(grad.norm(dim=-1), torch.ones(2000), atol=1e-4), name
        # 1-Lipschitz: moving by delta changes the SDF by at most |delta|
        delta = (torch.rand(2000, 3, generator=gen) - 0.5) * 0.2
        change = (scene.sdf(x + delta) - scene.sdf(x)).abs()
        assert (change <= delta.norm(dim=-1) + 1e-5).all(), name
        # everything lies inside [-1, 1]^3
        surface = scene.surface_points(200, gen)
        assert len(surface) > 100 and surface.abs().max() <= 1.0 + 1e-3, name


def test_sphere_trace_hits_the_unit_sphere() -> None:
    scene = SDFScene("s", [Sphere(radius=1.0)])
    o = torch.tensor([[0.0, 0.0, 4.0], [0.0, 1.2, 4.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    t, hit = sphere_trace(scene, o, d)
    assert hit.tolist() == [True, False]
    assert t[0] == pytest.approx(3.0, abs=1e-4) and torch.isinf(t[1])


def test_depth_and_normals_are_consistent_with_the_sdf(composite: Path) -> None:
    scene = load_scene_sdf(composite)
    for split in ("train", "test"):
        ds = load_dataset(composite, split)
        assert ds.depth is not None and ds.normal is not None
        assert torch.allclose(ds.aabb, torch.tensor([[-1.5] * 3, [1.5] * 3]))
        for i in range(len(ds)):
            o, d = image_rays(ds.cameras, i)
            depth = ds.depth[i].reshape(-1)
            hit = torch.isfinite(depth)
            assert hit.float().mean() > 0.1
            x = o[hit] + depth[hit, None] * d[hit]
            assert scene.sdf(x).abs().max() < 1e-3
            normal = ds.normal[i].reshape(-1, 3)
            assert torch.allclose(normal[hit].norm(dim=-1), torch.ones(int(hit.sum())), atol=1e-4)
            assert (normal[~hit] == 0).all()
            # normals face the camera, and covered pixel centres have alpha > 0
            assert ((normal[hit] * d[hit]).sum(-1) < 1e-3).all()
            assert (ds.opacity[i].reshape(-1)[hit] > 0).all()


def test_renders_are_view_independent_lambertian(composite: Path) -> None:
    ds = load_dataset(composite, "train")
    assert ds.rgb.shape == (6, 24, 24, 3) and ds.opacity.max() == 1.0 and ds.opacity.min() == 0.0
    # partial alpha only on silhouettes (supersampling), and several distinct albedos are visible
    assert ((ds.opacity > 0) & (ds.opacity < 1)).any()
    solid = ds.rgb[ds.opacity[..., 0] == 1]
    assert (solid.max(dim=-1).values > 0.05).all()


def test_scene_json_round_trip(composite: Path) -> None:
    original = scene_sdf("composite")
    loaded = load_scene_sdf(composite / "scene.json")
    assert loaded.to_dict() == original.to_dict()
    assert SDFScene.from_dict(json.loads(json.dumps(original.to_dict()))).to_dict() == original.to_dict()
    x = torch.rand(100, 3) * 2 - 1
    assert torch.equal(loaded.sdf(x), original.sdf(x)) and torch.equal(loaded.color(x), original.color(x))


def test_bad_scene_json(tmp_path: Path) -> None:
    (tmp_path / "scene.json").write_text(json.dumps({"name": "x", "aabb": [[-1] * 3, [1] * 3],
                                                      "primitives": [{"kind": "sphere", "radius": -1}]}))
    with pytest.raises(DataError, match="scene.json: not a valid SDF scene"):
        load_scene_sdf(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_scene_sdf(tmp_path / "missing")


def test_refuses_to_overwrite_and_leaves_nothing_behind(composite: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in composite.iterdir())
    with pytest.raises(DataError, match="not empty"):
        write_scene("sphere", composite, n_train=1, n_test=1, size=8)
    assert sorted(p.name for p in composite.iterdir()) == before
    with pytest.raises(ConfigError, match="unknown scene"):
        write_scene("teapot", tmp_path / "t")
    with pytest.raises(ConfigError):
        write_scene("sphere", tmp_path / "t", fov_deg=180.0)
    assert list(tmp_path.iterdir()) == []

    def fail(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_scene("sphere", tmp_path / "t", n_train=2, n_test=1, size=8, progress=fail)
    assert list(tmp_path.iterdir()) == []  # the partial folder was removed
    (tmp_path / "empty").mkdir()
    out = write_scene("sphere", tmp_path / "empty", n_train=2, n_test=1, size=8, supersample=1)
    assert (out / "transforms_test.json").is_file() and len(list(tmp_path.iterdir())) == 1


def test_cli_scene(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vision3d_kd.cli.data import data_app

    runner = CliRunner()
    res = runner.invoke(data_app, ["scene", "torus", "--out", str(tmp_path / "t"), "--n-train", "2",
                                   "--n-test", "1", "--size", "8"])
    assert res.exit_code == 0, res.output
    assert len(load_dataset(tmp_path / "t", "train")) == 2
    help_text = runner.invoke(data_app, ["scene", "--help"]).output
    for flag in ("--n-train", "--n-test", "--size", "--radius", "--fov", "--seed"):
        assert flag in help_text
