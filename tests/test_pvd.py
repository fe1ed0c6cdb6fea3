"""Progressive Volume Distillation: losses, PVD-AL mining, conversions between every family (and
splats) on a procedural scene, CLI errors, bench helpers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from vision3d_kd.bench.pvd import psnr_at, time_to_reach
from vision3d_kd.cameras import RandomCameraSampler
from vision3d_kd.distill.active import HardExampleMiner, per_camera_psnr, top_sample_mask, top_share_mask
from vision3d_kd.distill.convert_config import load_convert_config
from vision3d_kd.distill.pvd import _RaySource, _sample_weights, _step_losses, density_loss, init_student_grid
from vision3d_kd.distill.teacher import load_teacher
from vision3d_kd.errors import ConfigError

from .conftest import BAD_INPUTS, need_shared, one_line_error, run_cli

# Small students: fast on 2 cores, big enough to copy a 40x40 sphere.
STUDENT = {
    "mlp": ["field.width=64", "field.depth=3", "field.xyz_freqs=6"],
    "hashgrid": ["field.log2_table_size=14", "field.n_levels=8", "field.max_resolution=128"],
    "tensorf-vm": ["field.resolution=32", "field.upsample=[]", "field.n_density=8", "field.n_app=16"],
    "tensorf-cp": ["field.resolution=48", "field.upsample=[]", "field.n_density=24", "field.n_app=48"],
    "grid": ["field.resolution=48", "field.upsample=[]"],
}
COMMON = ["train.batch_rays=1024", "train.target_samples=0", "train.occ_resolution=32", "train.step_size=0.03",
          "train.max_seconds=0", "convert.eval_size=40", "convert.eval_views=4"]


@pytest.fixture
def teacher_run(sphere_hashgrid_run: Path) -> Path:
    """The conversions' teacher: the suite's hash grid fitted on the procedural sphere (tests/conftest.py)."""
    return sphere_hashgrid_run


def test_density_loss_clamps_the_target_one_sided():
    t = torch.tensor([50.0, 50.0, -80.0, -80.0, 1.0])
    s = torch.tensor([8.0, 0.0, -5.0, 0.0, 3.0], requires_grad=True)
    loss = density_loss(s, t, -2.0, 7.0)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(s.grad).all()
    # beyond the clamp on the target's side: done; otherwise pulled to the clamped target
    torch.testing.assert_close(loss.detach(), torch.tensor([0.0, 49.0, 0.0, 4.0, 4.0]))


def test_top_sample_mask_picks_the_heaviest_per_ray():
    w = torch.tensor([0.1, 0.5, 0.3, 0.9, 0.0, 0.2, 0.7])
    ray_i = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    mask = top_sample_mask(w, ray_i, 4, 1)
    assert mask.tolist() == [False, True, False, True, False, False, True]
    assert top_sample_mask(w, ray_i, 4, 2).sum() == 6


def test_top_share_mask_keeps_the_heaviest_share_of_rays_with_weight():
    """PVD-AL's point rule: floor(0.3 n) + 1 heaviest samples of each ray whose weights sum to >= 0.5."""
    w = torch.tensor([0.1, 0.5, 0.3, 0.05, 0.25, 0.1, 0.1, 0.1, 0.4, 0.3, 0.2, 0.1, 0.0, 0.05, 0.02])
    ray_i = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3])  # ray 1 sums to 0.55, ray 3 to 0.07
    mask = top_share_mask(w, ray_i, 5, 0.3, 0.5)
    # ray 0: n=4 -> 2 kept (0.5, 0.3); ray 1: 0.25 and the first of its ties; ray 2: n=5 -> 2; ray 3: too thin
    assert mask.tolist() == [False, True, True, False, True, True, False, False, True, True, False, False, False,
                             False, False]
    assert top_share_mask(w, ray_i, 5, 1.0, 0.0).all() and not top_share_mask(w, ray_i, 5, 0.3, 2.0).any()


def test_pvd_al_sample_rules_paper_union_and_boost():
    """The paper's rule keeps a sample the teacher or the student weighs heavily (and nothing on a thin ray);
    the boost rule keeps all samples and weighs the teacher's heaviest up."""
    cfg, _ = load_convert_config("mlp", overrides=["convert.active=true"])
    t_s = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.0, 0.1])
    t_e, ray_i = t_s + 0.1, torch.tensor([0, 0, 0, 0, 1, 1])
    t_sigma = torch.tensor([40.0, 0.0, 0.0, 0.0, 0.1, 0.1])  # the teacher: a wall at the first sample of ray 0
    s_logs = torch.log(torch.tensor([1e-3, 1e-3, 1e-3, 40.0, 0.1, 0.1]))  # the student: a wall at the last one
    w = _sample_weights(t_sigma, s_logs, t_s, t_e, ray_i, 2, cfg)
    # n=4 -> 2 samples each: the teacher's wall and (a tie at weight 0) the next one; the student's wall and
    # its heaviest other sample (the first); ray 1 is too thin for either
    assert w.tolist() == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    boost, _ = load_convert_config("mlp", overrides=["convert.active=true", "convert.al_samples=boost",
                                                     "convert.top_samples=1"])
    assert _sample_weights(t_sigma, s_logs, t_s, t_e, ray_i, 2, boost).tolist() == [5.0, 1.0, 1.0, 1.0, 5.0, 1.0]
    plain, _ = load_convert_config("mlp")
    assert _sample_weights(t_sigma, s_logs, t_s, t_e, ray_i, 2, plain).tolist() == [1.0] * 6


def test_miner_keeps_the_worst_cameras_and_rays():
    sampler = RandomCameraSampler(width=8, height=8)
    miner = HardExampleMiner(sampler, pool=2, camera_fraction=0.5, jitter_deg=0.0, ray_fraction=0.5)
    gen = torch.Generator().manual_seed(0)
    _, params = miner.cameras(4, gen)
    err = torch.tensor([1e-4, 1e-1, 1e-2, 1e-3])
    psnrs = per_camera_psnr(err, torch.arange(4), 4)
    torch.testing.assert_close(psnrs, torch.tensor([40.0, 10.0, 20.0, 30.0]))
    miner.update_cameras(params, psnrs)
    torch.testing.assert_close(miner.pool["azimuth_deg"], params["azimuth_deg"][[1, 2]])
    _, nxt = miner.cameras(4, gen)
    assert set(nxt["azimuth_deg"][:2].tolist()) == set(params["azimuth_deg"][[1, 2]].tolist())
    # re-drawn cameras are re-measured: now easy, they leave the pool for this step's two hardest new ones
    miner.update_cameras(nxt, torch.tensor([50.0, 50.0, 15.0, 25.0]))
    torch.testing.assert_close(miner.pool["azimuth_deg"], nxt["azimuth_deg"][[2, 3]])
    o, d = torch.zeros(4, 3), torch.eye(4, 3)
    miner.update_rays(o, d, err, 4)
    hard_o, hard_d = miner.take_rays()
    assert hard_d.tolist() == [d[1].tolist(), d[2].tolist()] and miner.take_rays() is None


def test_convert_config_validation():
    cfg, fit_cfg = load_convert_config("mlp", overrides=["convert.stage1_end=0.2", "convert.stage2_end=0.4",
                                                         "train.lr=0.001"])
    assert cfg.stage1_end == 0.2 and fit_cfg.train.lr == 0.001 and fit_cfg.field_name == "mlp"
    default, _ = load_convert_config("mlp")  # the PVD paper's code's losses
    assert (default.loss_form, default.feature_decay, default.density_weight) == ("norm", 0.995, 0.002)
    for bad in ["convert.stage1_end=0.5", "convert.nope=1", "convert.log_density_min=9", "convert.active=maybe",
                "convert.loss_form=l1", "convert.feature_decay=0", "convert.feature_decay=1.5"]:
        with pytest.raises(ConfigError):
            load_convert_config("mlp", overrides=[bad, "convert.stage2_end=0.4"])


def test_bench_curve_helpers():
    curve = [(10.0, 20.0), (20.0, 24.0), (40.0, 26.0)]
    assert time_to_reach(curve, 22.0) == pytest.approx(15.0)
    assert time_to_reach(curve, 19.0) == 10.0 and time_to_reach(curve, 27.0) is None
    assert psnr_at(curve, 30.0) == pytest.approx(25.0) and psnr_at(curve, 5.0) is None
    assert psnr_at(curve, 99.0) == 26.0


@pytest.mark.parametrize("family", ["mlp", "tensorf-vm", "tensorf-cp", "grid"])
def test_convert_hashgrid_teacher_into_each_family(teacher_run, family, tmp_path, capsys):
    out = tmp_path / family
    sets = [x for kv in STUDENT[family] + COMMON for x in ("--set", kv)]
    # 100 steps: at 90 every family already clears both bars (mlp, the slowest, 28.1 / 25.8 dB; 2026-12-05)
    assert run_cli(["convert", str(teacher_run), "--to", family, "--out", str(out), "--steps", "100",
                    "--no-progress", *sets]) == 0
    assert "PSNR vs teacher" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["field"] == family and m["teacher"] == "hashgrid" and m["steps"] == 100
    assert m["psnr_vs_teacher"] > 27, m  # held-out virtual views, against the teacher's renders
    assert m["psnr_test"] > 24, m  # the teacher's real held-out views (the teacher: ~29 dB)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["field"]["field"] == family and cfg["convert"]["teacher"] == str(teacher_run)


def test_convert_to_hashgrid_with_pvd_al_and_real_data(teacher_run, sphere_scene, tmp_path, capsys):
    out = tmp_path / "al"
    sets = [x for kv in STUDENT["hashgrid"] + COMMON for x in ("--set", kv)]
    assert run_cli(["convert", str(teacher_run), "--to", "hashgrid", "--out", str(out), "--steps", "150",
                    "--active", "--data", str(sphere_scene), "--no-progress", *sets]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["active"] is True and m["psnr_vs_teacher"] > 30, m
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    stages = [r["stage"] for r in log]
    assert stages == sorted(stages) and stages[-1] == 3
    # the same conversion without mining. PVD-AL does not beat plain PVD with the paper's losses (here about
    # -1.4 dB after 150 steps; on lego -0.65 dB with the first losses, bench/results/pvd-al.md), so this only
    # bounds the loss: a miner that drops the wrong samples or cameras loses far more than 2 dB
    plain = tmp_path / "pvd"
    assert run_cli(["convert", str(teacher_run), "--to", "hashgrid", "--out", str(plain), "--steps", "150",
                    "--data", str(sphere_scene), "--no-progress", *sets]) == 0
    p = json.loads((plain / "metrics.json").read_text())
    assert p["active"] is False and m["psnr_vs_teacher"] > p["psnr_vs_teacher"] - 2.0, (m, p)


def test_field_to_splats_and_back(teacher_run, tmp_path, capsys):
    splats = tmp_path / "splats"
    fast = ["train.init_points=3000", "train.refine_start=50", "train.refine_every=50", "train.refine_stop=250",
            "train.reset_every=0", "train.max_seconds=0", "convert.virtual_views=30", "convert.eval_size=40",
            "convert.eval_views=4"]
    assert run_cli(["convert", str(teacher_run), "--to", "splats", "--out", str(splats), "--steps", "300",
                    "--no-progress", *[x for kv in fast for x in ("--set", kv)]]) == 0
    m = json.loads((splats / "metrics.json").read_text())
    assert m["field"] == "splats" and m["psnr_vs_teacher"] > 22, m
    back = tmp_path / "back"
    sets = [x for kv in STUDENT["grid"] + COMMON + ["convert.virtual_views=30"] for x in ("--set", kv)]
    assert run_cli(["convert", str(splats), "--to", "grid", "--out", str(back), "--steps", "150",
                    "--no-progress", *sets]) == 0
    m = json.loads((back / "metrics.json").read_text())
    assert m["teacher"] == "splats" and m["psnr_vs_teacher"] > 20, m


def test_student_grid_resamples_the_teachers_grid():
    from vision3d_kd.distill.teacher import Teacher
    from vision3d_kd.render.occupancy import OccupancyGrid

    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    t_grid = OccupancyGrid(aabb, 8)
    t_grid.binary.zero_()
    t_grid.binary[(3 * 8 + 4) * 8 + 5] = True  # cell (3, 4, 5): x in [-0.25, 0), y in [0, 0.25), z in [0.25, 0.5)
    model = type("Stub", (), {"name": "hashgrid", "aabb": aabb})()
    teacher = Teacher(model, t_grid, {}, None, None)
    gen = torch.Generator().manual_seed(0)
    coarse = init_student_grid(teacher, aabb, 4, 1.0, gen)  # the cell holding the teacher cell's centre
    assert coarse.binary.nonzero().flatten().tolist() == [(1 * 4 + 2) * 4 + 2]
    fine = init_student_grid(teacher, aabb, 16, 1.0, gen)  # the 2x2x2 cells whose centres lie inside it
    ijk = [(int(i) // 256, int(i) // 16 % 16, int(i) % 16) for i in fine.binary.nonzero().flatten()]
    assert sorted(ijk) == [(i, j, k) for i in (6, 7) for j in (8, 9) for k in (10, 11)]


def test_huge_teacher_densities_keep_losses_finite(teacher_run):
    teacher = load_teacher(teacher_run)
    with torch.no_grad():  # densities ~e^60 inside the box
        teacher.model.density_net[-1].bias[0] = 60.0
    cfg, fit_cfg = load_convert_config("grid", overrides=[*STUDENT["grid"], *COMMON])
    from vision3d_kd.fields import build_field

    student = build_field({**fit_cfg.field, "field": "grid", "aabb": teacher.aabb.tolist()})
    gen = torch.Generator().manual_seed(0)
    grid = init_student_grid(teacher, student.aabb, 32, 1.0, gen)
    rays = _RaySource(teacher, cfg, None, None, "cpu").draw(256, gen)
    bg = torch.ones(rays.o.shape[0], 3)
    loss, parts, ray_err, n = _step_losses(student, teacher, rays, bg, grid, cfg, 3, 0.03, True, gen)
    loss.backward()
    assert n > 0 and torch.isfinite(loss) and all(torch.isfinite(v) for v in parts.values())
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    assert float(parts["density"].detach()) <= cfg.density_weight * (7.0 + 20.0) ** 2


def test_norm_loss_form_is_the_unsquared_norm_of_each_terms_differences(teacher_run):
    """The paper code's normL2 terms on one batch: each term's norm equals the square root of its mean squared
    error times the number of its elements, and the feature weight decays per step."""
    teacher = load_teacher(teacher_run)
    from vision3d_kd.fields import build_field

    parts = {}
    for form, step in (("mse", 10), ("norm", 10), ("mse", 0)):
        cfg, fit_cfg = load_convert_config("grid", overrides=[*STUDENT["grid"], *COMMON, f"convert.loss_form={form}",
                                                               "convert.feature_decay=0.9", "convert.active=false"])
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        student = build_field({**fit_cfg.field, "field": "grid", "aabb": teacher.aabb.tolist()})
        grid = init_student_grid(teacher, student.aabb, 32, 1.0, gen)
        rays = _RaySource(teacher, cfg, None, None, "cpu").draw(256, gen)
        _, parts[form, step], _, n = _step_losses(student, teacher, rays, torch.ones(256, 3), grid, cfg, 3, 0.03,
                                                  True, gen, step=step)
    mse, norm = parts["mse", 10], parts["norm", 10]
    torch.testing.assert_close(norm["rgb"], (mse["rgb"] * 256 * 3).sqrt())
    torch.testing.assert_close(norm["rgb_mse"], mse["rgb_mse"])  # the PSNR's MSE whatever the form
    # the density term (every sample, one channel): norm^2 / weight = mse / weight * samples
    torch.testing.assert_close((norm["density"] / cfg.density_weight) ** 2, mse["density"] / cfg.density_weight * n,
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(mse["feature"], parts["mse", 0]["feature"] * 0.9**10)  # the weight decays per step
    assert float(norm["feature"]) > 0


def test_convert_refuses_missing_weights_and_unknown_family(teacher_run, tmp_path, capsys):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(teacher_run / "config.json", no_weights / "config.json")
    assert run_cli(["convert", str(no_weights), "--to", "mlp", "--out", str(tmp_path / "o1")]) == 2
    one_line_error(capsys, "weights")
    unknown = tmp_path / "unknown"
    shutil.copytree(teacher_run, unknown, ignore=shutil.ignore_patterns("snapshots", "renders"))
    cfg = json.loads((unknown / "config.json").read_text())
    cfg["field"]["field"] = "octree"
    (unknown / "config.json").write_text(json.dumps(cfg))
    assert run_cli(["convert", str(unknown), "--to", "mlp", "--out", str(tmp_path / "o2")]) == 2
    one_line_error(capsys, "octree")
    assert run_cli(["convert", str(teacher_run), "--to", "octree", "--out", str(tmp_path / "o3")]) == 2
    one_line_error(capsys, "octree")
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))


@pytest.mark.parametrize("entry", ["run_nan_weights", "run_pickle_checkpoint"])
def test_convert_rejects_bad_runs(entry, tmp_path, capsys):
    run = need_shared(BAD_INPUTS / entry)
    assert run_cli(["convert", str(run), "--to", "mlp", "--out", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys, entry)
    assert "UNSAFE" not in err and "UNSAFE" not in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_bench_pvd_al_compares_methods_over_seeds_at_equal_steps_and_time(tmp_path, monkeypatch):
    """The pvd-al bench's bookkeeping (conversions replaced by known results): one teacher fit, every
    method x seed converted with the same steps and its own train.seed, gains = mean(AL) - mean(PVD), the
    equal-time PSNR read off each curve at the cheapest method's mean time, 'beats' only beyond both stds."""
    from vision3d_kd.bench import pvd_al

    final = {"pvd": [30.0, 30.2, 29.8], "al": [31.0, 31.1, 30.9], "al-boost": [30.1, 29.9, 30.3],
             "pvd-paper-losses": [29.0, 29.5, 29.3]}
    calls = []

    def fake_cli(*args):
        calls.append(args)
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True)
        if args[0] == "fit":
            (out / "metrics.json").write_text(json.dumps({"psnr_test": 32.0}))
            return
        method = out.name.rsplit("-seed", 1)[0]
        seed = int(out.name.rsplit("-seed", 1)[1])
        assert f"train.seed={seed}" in args and args[args.index("--steps") + 1] == "100"
        assert ("--active" in args) == (method in ("al", "al-boost"))
        assert ("convert.al_samples=boost" in args) == (method == "al-boost")
        assert ("convert.loss_form=norm" in args and "convert.feature_decay=0.995" in args) == (
            method == "pvd-paper-losses")
        (out / "metrics.json").write_text(json.dumps({"psnr_test": final[method][seed], "psnr_vs_teacher": 35.0,
                                                      "prepare_seconds": 0.0}))

    def fake_curve(run, data, offset=0.0):  # AL steps cost twice the time; PSNR rises linearly to its final
        p = json.loads((run / "metrics.json").read_text())["psnr_test"]
        end = 200.0 if "al" in run.name else 100.0
        return [(end / 2, p - 4.0), (end, p)]

    monkeypatch.setattr(pvd_al, "cli", fake_cli)
    monkeypatch.setattr(pvd_al, "psnr_curve", fake_curve)
    (tmp_path / "lego").mkdir()
    (tmp_path / "lego" / "transforms_train.json").write_text("{}")
    result = pvd_al.run(split="test", data=tmp_path / "lego", keep_dir=tmp_path / "runs", seeds=3, steps=100,
                        progress=lambda s: None)
    assert [c[0] for c in calls] == ["fit"] + ["convert"] * 12
    s = result["summary"]
    assert s["al_gain_db_equal_steps"] == pytest.approx(1.0) and s["al_beats_pvd"] is True
    assert s["al_boost_gain_db_equal_steps"] == pytest.approx(0.1) and s["al_boost_beats_pvd"] is False
    assert s["pvd_paper_losses_gain_db_equal_steps"] == pytest.approx(29.2667 - 30.0, abs=1e-3)
    assert s["equal_time_s"] == 100.0  # PVD's time; AL read at half its run: 4 dB below its final
    assert s["al_gain_db_equal_time"] == pytest.approx(31.0 - 4.0 - 30.0)
    assert s["val_test_disjoint"] is True and s["split"] == "test"
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["pvd"]["psnr_test_std"] == pytest.approx(0.2) and rows["al"]["per_seed"] == [31.0, 31.1, 30.9]
    again = pvd_al.run(split="test", data=tmp_path / "lego", keep_dir=tmp_path / "runs", seeds=3, steps=100,
                       progress=lambda s: None)  # finished runs are reused
    assert len(calls) == 13 and again["summary"] == s
