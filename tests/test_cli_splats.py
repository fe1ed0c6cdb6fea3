"""CLI for splats: fit -> export (3 formats) -> import-splats -> eval; bad splat files and bad runs."""

from __future__ import annotations

import json

import pytest
import torch

from vision3d_kd.export import read_splats
from vision3d_kd.runs import load_field

from .conftest import BAD_INPUTS, need_shared, one_line_error, run_cli

SPLAT_BAD = ["splats_missing_opacity.ply", "splats_nan.ply", "truncated.splat"]
FAST = ["--set", "train.init_points=1500", "--set", "train.refine_start=20", "--set", "train.refine_every=20",
        "--set", "train.refine_stop=200", "--set", "train.max_seconds=0"]


@pytest.fixture(scope="module")
def splat_run(sphere_scene, tmp_path_factory):
    run = tmp_path_factory.mktemp("splats") / "run"
    assert run_cli(["fit", str(sphere_scene), "--field", "splats", "--out", str(run), "--steps", "300",
                    "--no-progress", *FAST]) == 0
    return run


def test_fit_splats_writes_a_run(splat_run):
    m = json.loads((splat_run / "metrics.json").read_text())
    assert m["field"] == "splats" and m["steps"] == 300 and m["gaussians"] > 0 and m["psnr_test"] > 22
    for name in ("config.json", "weights.safetensors", "log.jsonl", "train_state.safetensors"):
        assert (splat_run / name).is_file()


@pytest.mark.parametrize("fmt,suffix", [("3dgs-ply", ".ply"), ("splat", ".splat"), ("spz", ".spz")])
def test_export_import_round_trip(splat_run, fmt, suffix, tmp_path, capsys):
    out = tmp_path / f"scene{suffix}"
    assert run_cli(["export", str(splat_run), "--format", fmt, "--out", str(out)]) == 0
    model, _ = load_field(splat_run)
    params = read_splats(out)
    assert params["means"].shape == (model.n, 3)
    if fmt == "3dgs-ply":
        plyfile = pytest.importorskip("plyfile")
        ply = plyfile.PlyData.read(str(out))
        assert ply["vertex"].count == model.n and "opacity" in ply["vertex"].data.dtype.names
        torch.testing.assert_close(params["means"], model.means.detach(), atol=1e-6, rtol=0)
    else:  # quantised formats: positions within a millimetre-scale tolerance of the run's
        order = torch.cdist(params["means"], model.means.detach()).argmin(1)
        assert (params["means"] - model.means.detach()[order]).abs().max() < 2e-3
    run2 = tmp_path / "imported"
    assert run_cli(["import-splats", str(out), "--out", str(run2)]) == 0
    data = json.loads((splat_run / "config.json").read_text())["data"]
    assert run_cli(["eval", str(run2), "--data", data]) == 0
    m = json.loads((run2 / "metrics.json").read_text())
    assert m["psnr_test"] > (20 if fmt == "3dgs-ply" else 15)


def test_render_orbit_of_a_splats_run(splat_run, tmp_path):
    imageio = pytest.importorskip("imageio")
    out = tmp_path / "orbit.gif"
    assert run_cli(["render", str(splat_run), "--orbit", "4", "--out", str(out), "--size", "32"]) == 0
    frames = imageio.mimread(out)
    assert len(frames) == 4 and frames[0].shape[:2] == (32, 32)
    centre = torch.tensor(frames[0][12:20, 12:20, :3]).float()
    assert centre.std() > 1 or (centre < 250).any()  # the object, not just the white background


def test_export_meshes_a_splats_run_by_tsdf_fusion(splat_run, tmp_path, capsys):
    import trimesh

    out = tmp_path / "m.glb"
    assert run_cli(["export", str(splat_run), "--format", "glb", "--out", str(out), "--resolution", "48",
                    "--views", "8"]) == 0
    assert "tsdf" in capsys.readouterr().out and len(trimesh.load(out, force="mesh").faces) > 100
    assert run_cli(["export", str(splat_run), "--format", "glb", "--method", "density", "--out",
                    str(tmp_path / "d.glb")]) == 2
    one_line_error(capsys, "density")
    assert not (tmp_path / "d.glb").exists()


@pytest.mark.parametrize("entry", SPLAT_BAD)
def test_import_rejects_bad_splat_files(entry, tmp_path, capsys):
    path = need_shared(BAD_INPUTS / entry)
    assert run_cli(["import-splats", str(path), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, entry)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("entry", ["run_nan_weights", "run_pickle_checkpoint"])
def test_export_rejects_bad_runs(entry, tmp_path, capsys):
    run = need_shared(BAD_INPUTS / entry)
    out = tmp_path / "x.ply"
    assert run_cli(["export", str(run), "--format", "3dgs-ply", "--out", str(out)]) == 2
    err = one_line_error(capsys, entry)
    assert "UNSAFE" not in err and not out.exists()


def test_export_splats_and_import_splats_round_trip_through_the_library(tmp_path):
    """The library functions behind `v3kd export --format 3dgs-ply` and `v3kd import-splats`: the same
    Gaussians come back, in a padded box, with every SH degree active; a splat file needs a splats run."""
    from vision3d_kd.errors import ConfigError, RunError
    from vision3d_kd.export.splats import export_splats, import_splats, padded_box
    from vision3d_kd.fields.splats import GaussianSplats
    from vision3d_kd.runs import save_field

    g = torch.Generator().manual_seed(0)
    n = 64
    params = {"means": torch.rand(n, 3, generator=g) - 0.5, "log_scales": torch.full((n, 3), -3.0),
              "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1), "opacity_logits": torch.randn(n, generator=g),
              "sh": 0.3 * torch.randn(n, 4, 3, generator=g)}
    run = tmp_path / "run"
    save_field(run, GaussianSplats(aabb=[[-1, -1, -1], [1, 1, 1]], n=0, sh_degree=1).set_params(params))
    out = tmp_path / "g.ply"
    assert export_splats(run, "3dgs-ply", out).n == n
    back = import_splats(out, tmp_path / "imported")
    assert back.n == n and back.sh_degree == 1 and int(back.active_sh_degree) == 1
    torch.testing.assert_close(back.means.detach(), params["means"], atol=1e-6, rtol=0)
    model, cfg = load_field(tmp_path / "imported")
    assert cfg["imported_from"] == str(out.resolve())
    torch.testing.assert_close(model.aabb, torch.tensor(padded_box(params["means"])))
    lo, hi = params["means"].min(0).values, params["means"].max(0).values
    assert (model.aabb[0] < lo).all() and (model.aabb[1] > hi).all()
    with pytest.raises(ConfigError, match="not empty"):
        import_splats(out, tmp_path / "imported")
    field_run = tmp_path / "field"
    from vision3d_kd.fields.grid import VoxelGridField

    save_field(field_run, VoxelGridField(aabb=[[-1, -1, -1], [1, 1, 1]], resolution=8, upsample=[]))
    with pytest.raises(RunError, match="needs a splats run"):
        export_splats(field_run, "splat", tmp_path / "x.splat")
    assert not (tmp_path / "x.splat").exists()
