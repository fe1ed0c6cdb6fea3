"""Mesh / point-cloud export: marching cubes, floaters, textures, TSDF fusion, writers and the CLI.

Fast tests use analytic runs: a voxel-grid field whose density is a sharp function of a procedural
scene's exact SDF and whose colour head outputs one known colour, saved as a run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import COLOR, RENDER, analytic_run, one_line_error, run_cli
from vision3d_kd.data.sdf import scene_sdf
from vision3d_kd.export.mesh import Mesh, keep_large_components, mesh_from_volume, vertex_normals
from vision3d_kd.export.mesh_io import linear_to_srgb, read_mesh, srgb_to_linear, write_mesh
from vision3d_kd.export.raster import rasterize_triangles
from vision3d_kd.export.texture import bake_texture, rasterize_uv
from vision3d_kd.metrics import chamfer_to_sdf


def chamfer(vertices: np.ndarray, faces: np.ndarray, name: str) -> float:
    return chamfer_to_sdf(vertices, faces, scene_sdf(name))


def diagonal(name: str) -> float:
    lo, hi = (np.array(c) for c in scene_sdf(name).aabb)
    return float(np.linalg.norm(hi - lo))


def test_marching_cubes_of_an_analytic_sphere_drops_floaters_and_cavities():
    r = 64
    x = np.linspace(-1.5, 1.5, r)
    xx, yy, zz = np.meshgrid(x, x, x, indexing="ij")
    dist = np.sqrt(xx**2 + yy**2 + zz**2)
    vol = np.clip(0.8 - dist, -0.5, 0.5) * 100  # sphere of radius 0.8 (level 0)
    vol[(np.abs(dist - 0.3) < 0.1)] = -50  # an inner cavity (a shell of empty space inside)
    floater = np.sqrt((xx - 1.2) ** 2 + (yy - 1.2) ** 2 + (zz - 1.2) ** 2) < 0.1
    vol[floater] = 50
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    mesh = mesh_from_volume(vol.astype(np.float32), 0.0, aabb, min_component=0.05)
    radius = np.linalg.norm(mesh.vertices, axis=1)
    # dropped: the floater and the core inside the cavity (the cavity fill then makes it solid again)
    assert np.abs(radius - 0.8).max() < 0.01 and mesh.info["components_dropped"] == 2
    normals = vertex_normals(mesh.vertices, mesh.faces)
    assert (np.sum(normals * mesh.vertices, axis=1) > 0).mean() > 0.99  # outward, CCW seen from outside
    kept = mesh_from_volume(vol.astype(np.float32), 0.0, aabb, min_component=0.0)
    assert np.linalg.norm(kept.vertices, axis=1).max() > 1.8  # the floater is back
    small = mesh_from_volume(vol.astype(np.float32), 0.0, aabb, target_faces=500)
    assert 400 <= len(small.faces) <= 520 and np.abs(np.linalg.norm(small.vertices, axis=1) - 0.8).mean() < 0.02


def test_keep_large_components_counts_what_it_drops():
    inside = np.zeros((10, 10, 10), bool)
    inside[1:6, 1:6, 1:6] = True
    inside[8, 8, 8] = True
    kept, dropped = keep_large_components(inside, 0.05)
    assert dropped == 1 and kept.sum() == 125 and not kept[8, 8, 8]


def test_uv_rasterizer_covers_each_texel_once():
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    texel, tri, bary = rasterize_uv(uv, faces, 16)
    assert torch.equal(rasterize_triangles(uv * 16, faces, 16, 16, chunk=50)[0].sort().values,
                       rasterize_triangles(uv * 16, faces, 16, 16)[0].sort().values)  # chunking changes nothing
    assert texel.numel() >= 256 and set(texel.tolist()) == set(range(256))
    assert torch.allclose(bary.sum(-1), torch.ones(len(bary))) and (bary >= -1e-6).all()


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_mesh_writers_round_trip_through_trimesh(tmp_path, fmt):
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], np.float32)
    out = tmp_path / f"tet.{fmt}"
    files = write_mesh(Mesh(verts, faces, colors), out)
    assert files == [out] and sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp files left
    loaded = read_mesh(out)  # back in the z-up world (glTF is +Y up)
    v = loaded.vertices
    order = [int(np.argmin(np.linalg.norm(v - p, axis=1))) for p in verts]
    assert np.allclose(v[order], verts, atol=1e-6) and len(loaded.faces) == 4
    rgb = loaded.colors[order]
    if fmt == "glb":  # glTF vertex colours are linear
        colors = srgb_to_linear(colors)
    assert np.abs(rgb - colors).max() <= 1 / 255 + 1e-6


def test_textured_obj_and_glb_carry_the_baked_colours(tmp_path):

    x = np.linspace(-1.5, 1.5, 32)
    xx, yy, zz = np.meshgrid(x, x, x, indexing="ij")
    vol = (0.8 - np.sqrt(xx**2 + yy**2 + zz**2)).astype(np.float32)
    mesh = mesh_from_volume(vol, 0.0, torch.tensor([[-1.5] * 3, [1.5] * 3]))

    def color_fn(p: np.ndarray, n: np.ndarray) -> np.ndarray:  # colour = position mapped into [0, 1]
        return np.clip((p + 1.0) / 2.0, 0, 1)

    tex = bake_texture(mesh, color_fn, size=128)
    assert tex.uv.shape == (len(tex.vertices), 2) and tex.texture.shape == (128, 128, 3)
    files = write_mesh(tex, tmp_path / "ball.obj")
    assert sorted(p.name for p in files) == ["ball.mtl", "ball.obj", "ball.png"] and all(p.is_file() for p in files)
    write_mesh(tex, tmp_path / "ball.glb")
    for path in (tmp_path / "ball.obj", tmp_path / "ball.glb"):
        m = read_mesh(path)
        px = np.clip((m.uv * [1, -1] + [0, 1]) * (np.array(m.texture.shape[1::-1]) - 1) + 0.5, 0, 127).astype(int)
        sampled = m.texture[px[:, 1], px[:, 0]] / 255.0  # texture looked up at each vertex's uv (v up)
        assert np.abs(sampled - color_fn(m.vertices, None)).mean() < 0.03, path


@pytest.mark.parametrize("name", ["sphere", "box", "torus"])
def test_export_glb_of_an_analytic_run_matches_the_true_surface(tmp_path, name):
    run = analytic_run(tmp_path / "run", name)
    out = tmp_path / f"{name}.glb"
    assert run_cli(["export", str(run), "--format", "glb", "--out", str(out), "--resolution", "96",
                    "--views", "12"]) == 0
    m = read_mesh(out)
    assert chamfer(m.vertices, m.faces, name) < 0.01 * diagonal(name)
    rgb = linear_to_srgb(m.colors)  # glTF vertex colours are linear
    assert np.abs(rgb - np.array(COLOR)).mean() < 0.05
    try:  # the optional extra: open3d reads the same file
        import open3d as o3d
    except ImportError:
        return
    assert len(o3d.io.read_triangle_mesh(str(out)).triangles) == len(m.faces)


def test_tsdf_method_and_point_cloud_of_an_analytic_run(tmp_path):
    import trimesh

    run = analytic_run(tmp_path / "run", "sphere", res=48)
    out = tmp_path / "fused.ply"
    png = tmp_path / "preview.png"
    assert run_cli(["export", str(run), "--format", "ply", "--method", "tsdf", "--fusion", "torch", "--out", str(out),
                    "--resolution", "64", "--views", "24", "--preview", str(png), "--preview-size", "64"]) == 0
    img = np.asarray(Image.open(png).convert("RGB")) / 255.0
    centre, corner = img[24:40, 24:40].reshape(-1, 3), img[:6, :6].reshape(-1, 3)
    assert np.allclose(corner, 1.0)  # white background around the object
    hue = centre / centre.sum(-1, keepdims=True)  # shaded, but of the mesh's colour
    assert np.abs(hue - np.array(COLOR) / sum(COLOR)).max() < 0.05
    m = trimesh.load(out, process=False, force="mesh")
    assert chamfer(np.asarray(m.vertices, np.float32), np.asarray(m.faces), "sphere") < 0.01 * diagonal("sphere")
    cloud = tmp_path / "points.ply"
    assert run_cli(["export", str(run), "--format", "pointcloud", "--out", str(cloud), "--views", "6"]) == 0
    pc = trimesh.load(cloud)
    pts = np.asarray(pc.vertices)
    assert len(pts) > 1000 and np.abs(np.linalg.norm(pts, axis=1) - 0.8).mean() < 0.02
    assert np.abs(pc.colors[:, :3] / 255.0 - np.array(COLOR)).mean() < 0.05


@pytest.mark.parametrize("fusion", ["torch", "open3d"])
def test_tsdf_fusions_agree_on_an_analytic_run(tmp_path, fusion):
    """open3d's UniformTSDFVolume (the optional extra) and the built-in fusion mesh the same surface."""
    if fusion == "open3d":
        pytest.importorskip("open3d", reason="the optional open3d extra is not installed")
    run = analytic_run(tmp_path / "run", "box", res=48)
    out = tmp_path / "fused.glb"
    assert run_cli(["export", str(run), "--format", "glb", "--method", "tsdf", "--fusion", fusion,
                    "--out", str(out), "--resolution", "64", "--views", "24"]) == 0
    m = read_mesh(out)
    assert chamfer(m.vertices, m.faces, "box") < 0.01 * diagonal("box")
    rgb = linear_to_srgb(m.colors)
    assert np.abs(rgb - np.array(COLOR)).mean() < 0.05


def test_export_refuses_bad_input_without_leaving_files(tmp_path, capsys):
    run = analytic_run(tmp_path / "run", "sphere", res=16, empty=True)
    out = tmp_path / "out" / "mesh.glb"
    out.parent.mkdir()
    assert run_cli(["export", str(run), "--format", "glb", "--out", str(out), "--resolution", "32",
                    "--views", "2"]) == 2
    one_line_error(capsys, "no surface")
    assert run_cli(["export", str(run), "--format", "stl", "--out", str(out)]) == 2
    one_line_error(capsys, "--format")
    assert run_cli(["export", str(run), "--format", "glb", "--method", "tsdf", "--fusion", "vtk", "--out",
                    str(out)]) == 2
    one_line_error(capsys, "--fusion")
    missing = tmp_path / "no_weights"
    missing.mkdir()
    (missing / "config.json").write_text(json.dumps({"field": {"field": "grid"}, "render": RENDER}))
    assert run_cli(["export", str(missing), "--format", "ply", "--out", str(out)]) == 2
    one_line_error(capsys, "weights")
    assert list(out.parent.iterdir()) == []


def test_export_run_checks_options_first_and_writes_a_mesh_preview(tmp_path):
    """The library functions behind `v3kd export`: bad preview options fail before any meshing or writing;
    `write_mesh_preview` renders the mesh in its colour on white at the run's camera distance."""
    from vision3d_kd.errors import ConfigError
    from vision3d_kd.export.run_export import export_run, write_mesh_preview

    run = analytic_run(tmp_path / "run", "sphere", res=16)
    out, png = tmp_path / "m.ply", tmp_path / "p.png"
    with pytest.raises(ConfigError, match="--preview-size"):
        export_run(run, "ply", out, preview=png, preview_size=4)
    with pytest.raises(ConfigError, match=".png"):
        export_run(run, "ply", out, preview=tmp_path / "p.jpg")
    with pytest.raises(ConfigError, match="--format"):
        export_run(run, "stl", out)
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]
    n = 40
    axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    mesh = mesh_from_volume(0.6 - np.sqrt(xx**2 + yy**2 + zz**2), 0.0, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    mesh.colors = np.tile(np.array(COLOR, np.float32), (len(mesh.vertices), 1))
    assert write_mesh_preview(run, mesh, png, 48) == png
    img = np.asarray(Image.open(png).convert("RGB")) / 255.0
    assert img.shape == (48, 48, 3) and np.allclose(img[:4, :4], 1.0)
    hue = img[20:28, 20:28].reshape(-1, 3)
    assert np.abs(hue / hue.sum(-1, keepdims=True) - np.array(COLOR) / sum(COLOR)).max() < 0.05
