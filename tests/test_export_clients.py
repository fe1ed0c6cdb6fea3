"""What we export, opened by other people's software: Khronos gltf-validator, three.js's GLTFLoader and
GaussianSplats3D in headless Chromium, PlayCanvas splat-transform (see vision3d_kd/bench/clients.py). Each
check compares with the package's own render of the same view or with the Gaussians written."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from tests.conftest import COLOR, analytic_run, run_cli
from vision3d_kd.bench.chromium import CHROMIUM
from vision3d_kd.bench.clients import ClientMissing, colour_errors, show, splat_transform, validate_gltf
from vision3d_kd.bench.clients import need as _need
from vision3d_kd.bench.exports import ball_mesh
from vision3d_kd.cameras import orbit_cameras
from vision3d_kd.data.axes import up_rotation
from vision3d_kd.data.splat_io import read_splats, write_splats
from vision3d_kd.export.mesh_io import write_mesh
from vision3d_kd.fields.splats import GaussianSplats


def need(package: str) -> None:
    """Skip the test (with the reason) when node or the npm package is not installed."""
    try:
        _need(package)
    except ClientMissing as e:
        pytest.skip(str(e))


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")
W, H = 160, 120


def _validate(path) -> dict:
    need("gltf-validator")
    return validate_gltf(path)


def _gltf_json(path) -> dict:
    data = path.read_bytes()
    n = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + n])


@pytest.mark.parametrize("textured", [False, True], ids=["vertex-colours", "textured"])
def test_glbs_are_valid_matte_and_smooth(tmp_path, textured):
    """Zero validator errors and warnings; a matte white PBR material (metallic 0, roughness 1, base colour
    1, so colours show at full value); per-vertex NORMALs that point outward."""
    out = tmp_path / "ball.glb"
    write_mesh(ball_mesh(textured), out)
    doc = _gltf_json(out)
    (mat,) = doc["materials"]
    pbr = mat["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0 and pbr["roughnessFactor"] == 1 and pbr["baseColorFactor"] == [1, 1, 1, 1]
    assert ("baseColorTexture" in pbr) == textured
    attrs = doc["meshes"][0]["primitives"][0]["attributes"]
    assert "NORMAL" in attrs and ("TEXCOORD_0" in attrs) == textured and ("COLOR_0" in attrs) != textured
    import trimesh

    geom = next(iter(trimesh.load(out, process=False).geometry.values()))
    normals, verts = np.asarray(geom.vertex_normals), np.asarray(geom.vertices)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-4)
    assert ((normals * verts).sum(1) / np.linalg.norm(verts, axis=1)).min() > 0.9  # outward on a ball
    report = _validate(out)
    assert report["errors"] == 0 and report["warnings"] == 0, report["messages"]


def test_obj_and_ply_carry_normals_white_material_and_the_asked_up_axis(tmp_path):
    ball = ball_mesh(textured=True)
    write_mesh(ball, tmp_path / "ball.obj")
    mtl = (tmp_path / "ball.mtl").read_text().split("\n")
    assert "Kd 1.00000000 1.00000000 1.00000000" in mtl and any(line.startswith("map_Kd") for line in mtl)
    assert sum(line.startswith("vn ") for line in (tmp_path / "ball.obj").read_text().split("\n")) > 0
    coloured = ball_mesh(textured=False)
    write_mesh(coloured, tmp_path / "z.ply")
    write_mesh(coloured, tmp_path / "y.ply", up="+y")
    import trimesh

    z, y = trimesh.load(tmp_path / "z.ply", process=False), trimesh.load(tmp_path / "y.ply", process=False)
    assert b"property float nx" in (tmp_path / "z.ply").read_bytes()[:400]
    np.testing.assert_allclose(z.vertices, coloured.vertices, atol=1e-6)
    np.testing.assert_allclose(y.vertices, coloured.vertices @ up_rotation("+y").T, atol=1e-6)  # (x, z, -y)


def test_up_axis_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    run = analytic_run(tmp_path / "run", "sphere", res=16)
    for fmt, up, needle in (("glb", "+z", "glTF is +Y up"), ("obj", "x", "--up must be one of")):
        out = tmp_path / f"m.{fmt}"
        assert run_cli(["export", str(run), "--format", fmt, "--up", up, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and not out.exists()


@needs_chromium
def test_three_js_shows_our_glb_in_the_runs_colours(tmp_path):
    """A torus run exported as GLB, shown by three.js's GLTFLoader under a white hemisphere light of
    intensity pi (a matte white-based material then shows its colour at full value): where the object is and
    its mean colour match the run's own render of the same view (within 0.1 per channel)."""
    need("three")
    from vision3d_kd.render.image import render
    from vision3d_kd.runs import load_run, render_settings_from

    run = analytic_run(tmp_path / "run", "torus", res=64)
    glb = tmp_path / "torus.glb"
    assert run_cli(["export", str(run), "--format", "glb", "--out", str(glb), "--resolution", "96",
                    "--views", "12"]) == 0
    cams = orbit_cameras(1, 4.0, 35.0, 40.0, W, H, azimuth_offset_deg=20.0)
    field, grid, cfg = load_run(run)
    with torch.no_grad():
        out = render(field, cams, 0, grid, render_settings_from(cfg), "white")
    theirs = show("gltf.html", glb, cams, 0, up_rotation("+y"), tmp_path / "three.png")
    err = colour_errors(theirs, out["rgb"].numpy(), out["opacity"].numpy() > 0.5)
    assert err["cell"] < 0.1 and err["object"] < 0.1, (err, COLOR)


def _two_balls() -> GaussianSplats:
    """Degree-0 Gaussians: a red ball up and to the right, a blue one down and to the left (any wrong turn
    or mirror moves the colours across the image)."""
    gen = torch.Generator().manual_seed(0)
    pts, cols = [], []
    for centre, colour in (([0.5, 0.0, 0.45], [0.9, 0.15, 0.1]), ([-0.5, 0.2, -0.4], [0.1, 0.2, 0.9])):
        d = torch.randn(1500, 3, generator=gen)
        pts.append(torch.tensor(centre) + 0.4 * d / d.norm(dim=1, keepdim=True) * torch.rand(1500, 1, generator=gen))
        cols.append(torch.tensor(colour).expand(1500, 3))
    splats = GaussianSplats(aabb=[[-1.5] * 3, [1.5] * 3], n=0, sh_degree=0)
    splats.init_points(torch.cat(pts), torch.cat(cols), opacity=0.9, generator=gen)
    return splats


@needs_chromium
@pytest.mark.parametrize("suffix", [".ply", ".splat", ".spz"])
def test_gaussian_splats_3d_shows_our_splat_files_where_and_as_our_rasterizer_does(tmp_path, suffix):
    """GaussianSplats3D 0.4.7 opens each of our default files (spz version 2: the one it reads). It draws a
    file in the file's own coordinates: PLY and .splat in RDF (y down) and — not turning spz's RUB, unlike
    splat-transform — .spz in RUB; the camera is placed in that frame. Each 4x4 cell's mean colour and the
    object's mean colour are within 0.1 of our rasterizer's image of the same view."""
    need("@mkkellogg/gaussian-splats-3d")
    from vision3d_kd.render.splat import render_splats

    splats = _two_balls()
    path = tmp_path / f"balls{suffix}"
    write_splats(splats.to_params(), path)
    cams = orbit_cameras(1, 3.5, 20.0, 45.0, W, H, azimuth_offset_deg=-90.0)
    with torch.no_grad():
        out = render_splats(splats, cams, torch.ones(3))
    frame = up_rotation("+y" if suffix == ".spz" else "-y")
    theirs = show("splats.html", path, cams, 0, frame, tmp_path / "splats3d.png")
    err = colour_errors(theirs, out["rgb"].numpy(), out["opacity"].numpy() > 0.5)
    assert err["cell"] < 0.1 and err["object"] < 0.1, err


def _matched(a: dict, b: dict) -> dict:
    """`b`'s Gaussians reordered to match `a`'s by nearest centre (files may reorder them)."""
    d = torch.cdist(a["means"].double(), b["means"].double())
    return {k: v[d.argmin(1)] for k, v in b.items()}


def _rotation(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = torch.nn.functional.normalize(q.double(), dim=1).unbind(1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).view(-1, 3, 3)


@pytest.mark.parametrize("name, version", [("a.ply", None), ("a.splat", None), ("a.spz", 2), ("a.spz", 3),
                                           ("a.spz", 4)])
def test_splat_transform_reads_and_rewrites_our_files_in_the_same_orientation(tmp_path, name, version):
    """splat-transform reads each of our files and writes it back (.splat as PLY: it does not write .splat);
    we read its file with the default frames and get the Gaussians we wrote, within each format's
    quantisation — one orientation for all formats (its spz writer/reader is Niantic's own library)."""
    need("@playcanvas/splat-transform")
    gen = torch.Generator().manual_seed(1)
    splats = GaussianSplats(aabb=[[-1.5] * 3, [1.5] * 3], n=0, sh_degree=0 if name.endswith(".splat") else 2)
    splats.init_points(torch.rand(300, 3, generator=gen) * 2 - 1, torch.rand(300, 3, generator=gen) * 0.8 + 0.1,
                       opacity=0.7, generator=gen)
    with torch.no_grad():
        splats.quats.copy_(torch.randn(splats.quats.shape, generator=gen))
        splats.log_scales.add_(torch.randn(splats.log_scales.shape, generator=gen) * 0.3)
        if splats.sh.shape[1] > 1:
            splats.sh[:, 1:] = 0.2 * torch.randn(splats.sh[:, 1:].shape, generator=gen)
    params = splats.to_params()
    src = tmp_path / name
    write_splats(params, src, **({"version": version} if version else {}))
    dst = tmp_path / ("back.ply" if name.endswith(".splat") else f"back{src.suffix}")
    splat_transform(src, dst)
    if dst.suffix == ".spz":
        assert dst.read_bytes()[:4] == b"NGSP"  # splat-transform writes version 4
    back = _matched(params, read_splats(dst))
    coarse = not name.endswith(".ply")
    torch.testing.assert_close(back["means"], params["means"], atol=2e-4 if coarse else 1e-6, rtol=0)
    torch.testing.assert_close(back["log_scales"], params["log_scales"], atol=0.04 if coarse else 1e-5, rtol=0)
    torch.testing.assert_close(back["sh"][:, 0], params["sh"][:, 0], atol=0.03 if coarse else 1e-5, rtol=0)
    rot_err = (_rotation(back["quats"]) - _rotation(params["quats"])).abs().max()
    # spz 2 keeps x, y, z in 8 bits and rebuilds w: coarse where w is small (3 and 4 pack 9-bit smallest three)
    assert float(rot_err) < (0.2 if version == 2 else 0.03 if coarse else 1e-5)
    if back["sh"].shape[1] > 1:
        torch.testing.assert_close(back["sh"][:, 1:], params["sh"][:, 1:], atol=0.07 if coarse else 1e-5, rtol=0)
