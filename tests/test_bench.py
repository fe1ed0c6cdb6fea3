"""`v3kd bench`: report layout (JSON {rows, summary, command, machine}, Markdown), subcommand help, checks."""

import json

import pytest
import torch

from vision3d_kd.bench.report import REPO, bench_command, markdown_table, repo_path, write_results

from .conftest import one_line_error, run_cli


def test_write_results_layout(tmp_path):
    result = {"rows": [{"field": "grid", "psnr_test": 27.5}, {"field": "mlp", "psnr_test": 24.1, "note": "x"}],
              "summary": {"psnr_grid": 27.5}}
    jpath, mpath = write_results("demo", result, tmp_path)
    payload = json.loads(jpath.read_text())
    assert set(payload) == {"rows", "summary", "command", "machine"}
    assert payload["summary"] == {"psnr_grid": 27.5} and payload["machine"]["cpu_count"] >= 1
    md = mpath.read_text()
    assert "| field | psnr_test | note |" in md and "| mlp | 24.1 | x |" in md


def test_bench_json_names_paths_relative_to_the_repository(tmp_path, monkeypatch):
    """Runs inside the repository and data beside it (../shared) are written relative; the command too."""
    assert repo_path(REPO / "bench" / "runs" / "x") == "bench/runs/x"
    assert repo_path(REPO.parent / "shared" / "data" / "lego") == "../shared/data/lego"
    assert repo_path("bench/runs/y") == "bench/runs/y"
    argv = ["v3kd", "bench", "pvd", "--data", str(REPO.parent / "shared" / "d"), "--runs-dir", str(REPO / "r")]
    assert bench_command(argv, "pvd") == "v3kd bench pvd --data ../shared/d --runs-dir r"
    monkeypatch.setattr("sys.argv", argv)
    jpath, _ = write_results("demo", {"rows": [], "summary": {}}, tmp_path)
    assert json.loads(jpath.read_text())["command"] == "v3kd bench pvd --data ../shared/d --runs-dir r"


def test_repo_path_keeps_a_symlinked_data_folder_beside_the_repository(tmp_path, monkeypatch):
    """`../shared` may itself be a symlink (a git worktree beside a link to the data): still written relative."""
    box = tmp_path / "box"
    (box / "repo").mkdir(parents=True)
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)
    (box / "shared").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr("vision3d_kd.bench.report.REPO", box / "repo")
    assert repo_path(box / "shared" / "data") == "../shared/data"
    assert repo_path(box / "repo" / ".." / "shared" / "data") == "../shared/data"
    assert repo_path(tmp_path / "elsewhere" / "data") == str(tmp_path / "elsewhere" / "data")


def test_markdown_table_columns_in_first_seen_order():
    assert markdown_table([{"a": 1}, {"b": 2.0}]).splitlines()[0] == "| a | b |"


BENCHMARKS = ("kernels", "fit-lego", "rasterizer", "pvd", "pvd-al", "mesh", "prior", "prior-cost", "text-to-3d",
              "event-vggt", "capture")


def test_unknown_benchmark_is_a_usage_error(capsys, tmp_path):
    assert run_cli(["bench", "nope", "--out-dir", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_bench_help_lists_every_benchmark_with_a_description(capsys):
    assert run_cli(["bench", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in BENCHMARKS:
        row = next((line for line in lines if line.strip(" │").startswith(name + " ")), None)
        assert row is not None and len(row.strip(" │")) > len(name) + 10, name


def test_each_benchmark_shows_only_its_own_options(capsys):
    assert run_cli(["bench", "fit-lego", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--out-dir", "--budget", "--fields", "--data", "--runs-dir", "default 780"):
        assert option in out, option
    for option in ("--seeds", "--methods", "--teacher", "--convert-budget", "--prior"):
        assert option not in out, option
    assert run_cli(["bench", "kernels", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--out-dir" in out and "--budget" not in out and "--runs-dir" not in out
    assert run_cli(["bench", "fit-lego", "--seeds", "2"]) == 2  # not an option of fit-lego


@pytest.mark.parametrize("args, name", [
    (["fit-lego", "--budget", "0"], "--budget"),
    (["fit-lego", "--fields", "hashgrid,nope"], "nope"),
    (["pvd", "--convert-budget", "-1"], "--convert-budget"),
    (["mesh", "--field", "nope"], "nope"),
    (["text-to-3d", "--methods", "sds,nope"], "nope"),
    (["text-to-3d", "--seeds", "0"], "--seeds"),
    (["text-to-3d", "--set", "no-equals-sign"], "no-equals-sign"),
    (["text-to-3d", "--split", "train"], "--split"),
    (["event-vggt", "--steps", "0"], "--steps"),
    (["event-vggt", "--set", "steps=5"], "steps"),  # the bench's own option, not a variant
    (["event-vggt", "--set", "stfd_mode"], "stfd_mode"),
    (["event-vggt", "--rows", "full,nope"], "nope"),
    (["capture", "--methods", "capture,nope"], "nope"),
    (["capture", "--split", "train"], "--split"),
    (["capture", "--budget", "0"], "--budget"),
])
def test_bad_option_values_are_one_line_errors_before_any_work(args, name, capsys, tmp_path):
    assert run_cli(["bench", *args, "--out-dir", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]) == 2
    one_line_error(capsys, name)
    assert not list(tmp_path.iterdir())


def test_bench_gsv3d_refuses_a_negative_first_seed_before_loading_models(capsys, tmp_path):
    assert run_cli(["bench", "gsv3d", "--first-seed", "-1", "--out-dir", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "--first-seed")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, module, expected", [
    (["kernels", "--quick"], "kernels", {"quick": True}),
    (["rasterizer"], "rasterizer", {"quick": False}),
    (["fit-lego", "--data", "D", "--budget", "5", "--fields", "grid, mlp", "--runs-dir", "R"], "fit_lego",
     {"quick": False, "data": "D", "budget_s": 5.0, "fields": ["grid", "mlp"], "keep_dir": "R"}),
    (["pvd", "--quick", "--budget", "7", "--convert-budget", "3"], "pvd",
     {"quick": True, "data": None, "budget_s": 7.0, "convert_budget_s": 3.0, "keep_dir": None}),
    (["pvd-al", "--split", "test", "--seeds", "2", "--steps", "50", "--methods", "pvd,al"], "pvd_al",
     {"quick": False, "split": "test", "data": None, "keep_dir": None, "seeds": 2, "steps": 50, "budget_s": None,
      "methods": ["pvd", "al"]}),
    (["mesh", "--field", "grid"], "mesh", {"quick": False, "budget_s": None, "field": "grid", "keep_dir": None}),
    (["mesh", "--fields", "mlp"], "mesh", {"quick": False, "budget_s": None, "field": "mlp", "keep_dir": None}),
    (["prior", "--prior", "P"], "prior", {"quick": False, "prior_path": "P", "n_pairs": None, "objects": None,
                                          "grid_path": "OUT/prior_samples.png"}),
    (["prior", "--objects", "brown table, gray cube", "--pairs", "8"], "prior",
     {"quick": False, "prior_path": None, "n_pairs": 8, "objects": ["brown table", "gray cube"],
      "grid_path": "OUT/prior-objects_samples.png"}),
    (["text-to-3d", "--seeds", "2", "--methods", "vsd,bsd", "--set", "guidance.bsd_lambda=18"], "text_to_3d",
     {"quick": False, "prior_path": None, "runs_dir": None, "seeds": 2, "steps": None, "methods": ["vsd", "bsd"],
      "sets": ["guidance.bsd_lambda=18"], "split": "validation"}),
    (["text-to-3d", "--split", "test"], "text_to_3d", {"quick": False, "prior_path": None, "runs_dir": None,
                                                       "seeds": None, "steps": None, "methods": None, "sets": None,
                                                       "split": "test"}),
    (["event-vggt", "--teacher", "T", "--steps", "9"], "event_vggt",
     {"quick": False, "teacher_path": "T", "runs_dir": None, "steps": 9, "split": "validation", "seeds": None,
      "variant": None, "rows": None}),
    (["event-vggt", "--split", "test", "--seeds", "2", "--set", "stfd_mode=tokens", "--set", "w_tcd=0.5",
      "--rows", "full,output_only"], "event_vggt",
     {"quick": False, "teacher_path": None, "runs_dir": None, "steps": None, "split": "test", "seeds": 2,
      "variant": {"stfd_mode": "tokens", "w_tcd": 0.5}, "rows": ["full", "output_only"]}),
    (["prior-cost", "--shapes", "sdxl", "--dtypes", "bf16,fp16"], "prior_cost",
     {"quick": False, "shapes": ["sdxl"], "dtypes": ["bf16", "fp16"]}),
    (["capture", "--split", "test", "--seeds", "2", "--methods", "naive", "--no-sfm"], "capture",
     {"quick": False, "split": "test", "budget_s": None, "seeds": 2, "runs_dir": None, "methods": ["naive"],
      "sfm": False, "progress": print}),
])
def test_each_subcommand_passes_its_options_to_its_run(args, module, expected, monkeypatch, tmp_path, capsys):
    import importlib

    calls = []

    def fake_run(**kwargs):
        calls.append({k: str(v).replace(str(tmp_path), "OUT") if hasattr(v, "parts") else v for k, v in kwargs.items()})
        return {"rows": [{"case": "a", "ms": 1.5}], "summary": {"best": 1.5}}

    monkeypatch.setattr(importlib.import_module(f"vision3d_kd.bench.{module}"), "run", fake_run)
    assert run_cli(["bench", *args, "--out-dir", str(tmp_path)]) == 0
    assert calls == [expected]
    split = expected.get("split")  # a bench's test split keeps its plain name, other splits are suffixed
    name = args[0] if split in (None, "test") else f"{args[0]}-{split}"
    if expected.get("objects"):  # the prior's chosen objects report apart from its held-out pairs
        name += "-objects"
    if expected.get("variant"):  # a variant's report carries its settings
        name += "+" + ",".join(f"{k}={v}" for k, v in sorted(expected["variant"].items()))
    assert json.loads((tmp_path / f"{name}.json").read_text())["summary"] == {"best": 1.5}
    assert (tmp_path / f"{name}.md").is_file() and "summary: best=1.5" in capsys.readouterr().out


def test_capture_bench_summary_over_seeds_with_aligned_scores(monkeypatch, tmp_path):
    """The capture bench's bookkeeping (fits replaced by known metrics): every method x seed, seed-major;
    mean ± std per method; aligned scores where a method has them; the SfM figures and differences."""
    from vision3d_kd.bench import capture

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "transforms.json").write_text("{}")
    psnr = {"capture": [35.0, 36.0, 37.0], "naive": [18.0, 18.0, 18.0], "splats": [35.5, 35.5, 36.5],
            "sfm": [33.0, 34.0, 35.0], "sfm-intrinsics": [34.0, 35.0, 36.0]}
    calls = []

    def fake_fit(data, out, args, budget, seed, align=False):
        method = out.name.rsplit("-s", 1)[0]
        calls.append((method, seed, data.name, align))
        if method == "sfm-fixed":
            return {"psnr_test": 31.0, "ssim_test": 0.9, "seconds": 900.0, "steps": 3000}
        m = {"psnr_test": psnr[method][seed], "ssim_test": 0.95, "seconds": 900.0, "steps": 3000}
        if method.startswith("sfm") or (method == "capture" and seed == 2):  # only one true-pose run kept its weights
            m["psnr_test_aligned"] = m["psnr_test"] + 1.0
        if method == "sfm":  # as merged by _refined_pose_errors (only where the checkpoint is here)
            m["refined_rot_err_deg"], m["refined_trans_err_pct"] = 0.3 + 0.1 * seed, 0.5
        return m

    errs = {"registered": 72, "images": 72, "rot_err_deg": 0.6, "rot_err_deg_max": 1.2, "trans_err": 0.013,
            "trans_err_max": 0.02, "trans_err_scene": 0.003}
    monkeypatch.setattr(capture, "_fit", fake_fit)
    monkeypatch.setattr(capture, "_sfm_poses", lambda data, base: (base / "sfm-data", errs))
    result = capture.run(split="test", runs_dir=tmp_path)
    assert [c[:2] for c in calls[:5]] == [("capture", 0), ("naive", 0), ("splats", 0), ("sfm", 0),
                                          ("sfm-intrinsics", 0)]
    assert {c[2] for c in calls if c[0].startswith("sfm")} == {"sfm-data"} and calls[-1][0] == "sfm-fixed"
    assert [c[3] for c in calls[:5]] == [True, False, False, True, True]
    s = result["summary"]
    assert s["psnr_capture"] == 36.0 and s["psnr_capture_std"] == 1.0 and s["psnr_naive_std"] == 0.0
    assert s["psnr_capture_aligned"] == 38.0 and s["psnr_capture_aligned_seeds"] == 1
    assert s["psnr_sfm_poses"] == 34.0 and s["psnr_sfm_poses_aligned"] == 35.0
    assert s["psnr_sfm_minus_true"] == -2.0 and s["psnr_sfm_aligned_minus_true"] == -1.0
    assert s["psnr_sfm_aligned_minus_true_aligned"] == -3.0 and s["psnr_sfm_fixed"] == 31.0
    assert s["sfm_rot_err_deg"] == 0.6 and s["sfm_registered"] == "72/72" and s["sfm_trans_err_pct_of_scene"] == 0.3
    assert s["psnr_sfm_intrinsics"] == 35.0 and s["psnr_sfm_intrinsics_aligned_minus_true"] == 0.0
    assert s["psnr_sfm_intrinsics_aligned_minus_true_aligned"] == -2.0
    assert s["sfm_poses_refined_rot_err_deg"] == 0.4 and s["sfm_poses_refined_trans_err_pct"] == 0.5
    assert "sfm_intrinsics_refined_rot_err_deg" not in s
    assert len(result["rows"]) == 16 and result["rows"][-1]["psnr_test"] == 31.0


def test_fit_lego_reuses_only_finished_runs_of_the_same_budget(tmp_path):
    from vision3d_kd.bench.fit_lego import _finished_with_budget

    run = tmp_path / "grid"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"fit": {"train": {"max_seconds": 780.0}}}))
    assert not _finished_with_budget(run, 780)  # interrupted: no metrics.json yet
    (run / "metrics.json").write_text("{}")
    assert _finished_with_budget(run, 780) and not _finished_with_budget(run, 45)


def test_prior_cost_builds_the_real_models_shapes_and_refuses_unknown_ones(tmp_path, capsys):
    """The bench's pipelines have the published parameter counts (built on the meta device: no memory)."""
    from vision3d_kd.bench.prior_cost import build_modules

    counts = {}
    for shape in ("sd15", "sdxl"):
        with torch.device("meta"):
            modules = build_modules(shape, False, tmp_path / shape)
        counts[shape] = {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items() if k in
                         ("unet", "vae", "text_encoder", "text_encoder_2")}
    assert counts["sd15"] == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert counts["sdxl"] == {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                              "text_encoder_2": 694_659_840}
    for args, name in ((["--shapes", "sd3"], "sd3"), (["--dtypes", "fp8"], "fp8")):
        assert run_cli(["bench", "prior-cost", *args, "--out-dir", str(tmp_path / "out")]) == 2
        one_line_error(capsys, name)
    assert not (tmp_path / "out").exists()


def test_bench_lucid_reuses_a_run_whatever_the_order_of_its_sets(tmp_path, monkeypatch):
    """A finished `bench lucid` run is reused when asked for with the same --set options in another order (its
    folder name sorts them), and refused with other options."""
    from vision3d_kd.bench import lucid, text_to_3d
    from vision3d_kd.errors import RunError

    monkeypatch.setattr(text_to_3d, "check_settings", lambda *a, **k: None)
    sets = ["generate.box_density_heads=true", "generate.box_blob_scaled=true"]
    rec = {"sets": sets, "steps": 600, "scorer": lucid.SCORER, "objects": []}
    (tmp_path / "score.json").write_text(json.dumps(rec))
    sentence = lucid.SPLITS["validation"][0]
    got = lucid._one(sentence, "lucid", 0, tmp_path, None, "", None, sets[::-1])
    assert got["sets"] == sets
    with pytest.raises(RunError, match="other settings"):
        lucid._one(sentence, "lucid", 0, tmp_path, None, "", None, sets[:1])
