"""The v3kd CLI: bad inputs give one line and exit 2 with no output written; fit/eval/render work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import BAD_INPUTS, need_shared, one_line_error, run_cli

FIT_BAD = ["blender_missing_image", "blender_bad_json", "blender_bad_matrix", "blender_nan_matrix",
           "blender_truncated_png", "blender_mismatched_sizes", "blender_no_frames", "blender_no_intrinsics",
           "nerfstudio_no_focal"]
RUN_BAD = ["run_nan_weights", "run_pickle_checkpoint"]


@pytest.mark.parametrize("entry", FIT_BAD)
def test_fit_rejects_bad_dataset_with_one_line_and_no_run_dir(entry, tmp_path, capsys):
    data = need_shared(BAD_INPUTS / entry)
    assert run_cli(["fit", str(data), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    one_line_error(capsys, entry)
    assert not (tmp_path / "run").exists()


LOCAL_BAD = Path(__file__).parent / "bad_inputs"
CAPTURE_BAD = sorted(p.name for p in LOCAL_BAD.iterdir() if p.is_dir() and p.name.startswith("colmap_"))


@pytest.mark.parametrize("entry", CAPTURE_BAD)
def test_fit_rejects_bad_captures_with_one_line_and_no_run_dir(entry, tmp_path, capsys):
    # the repository's own corpus (tests/bad_inputs/): every COLMAP entry, inconsistent sizes included
    assert run_cli(["fit", str(LOCAL_BAD / entry), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    one_line_error(capsys, entry)
    assert not (tmp_path / "run").exists()


def test_fit_missing_dataset(tmp_path, capsys):
    assert run_cli(["fit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, "nowhere")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("entry", RUN_BAD)
@pytest.mark.parametrize("verb", ["eval", "render", "export", "view"])
def test_run_readers_reject_bad_runs(entry, verb, tmp_path, capsys):
    run = need_shared(BAD_INPUTS / entry)
    out = tmp_path / ("out.glb" if verb == "export" else "out.mp4")
    args = {"eval": [verb, str(run), "--data", str(tmp_path)], "render": [verb, str(run), "--out", str(out)],
            "export": [verb, str(run), "--format", "glb", "--out", str(out)],
            "view": [verb, str(run), "--port", "0"]}[verb]
    assert run_cli(args) == 2
    err = one_line_error(capsys, entry)
    assert "UNSAFE" not in err and "UNSAFE" not in capsys.readouterr().out
    assert not out.exists()


def test_fit_eval_render_on_a_procedural_scene(sphere_scene, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["fit", str(sphere_scene), "--field", "grid", "--out", str(run), "--steps", "200", "--no-progress",
            "--set", "field.resolution=32", "--set", "field.upsample=[]", "--set", "train.batch_rays=512",
            "--set", "train.target_samples=0", "--set", "train.occ_resolution=32", "--set", "train.step_size=0.03",
            "--max-seconds", "0"]
    assert run_cli(args) == 0
    assert "PSNR" in capsys.readouterr().out
    assert run_cli(["fit", str(sphere_scene), "--out", str(run)]) == 2  # refuses to overwrite
    capsys.readouterr()
    assert run_cli(["eval", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["psnr_test"] > 18 and 0 < metrics["ssim_test"] <= 1
    capsys.readouterr()
    assert run_cli(["render", str(run), "--orbit", "4", "--size", "24", "--out", str(tmp_path / "o.gif")]) == 0
    assert (tmp_path / "o.gif").stat().st_size > 0
    assert run_cli(["render", str(run), "--orbit", "3", "--size", "16", "--out", str(tmp_path / "frames")]) == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3
    shutil.rmtree(run)


def test_help_lists_every_verb(capsys):
    assert run_cli(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in ("fit", "eval", "render", "bench", "data"):
        assert verb in out
