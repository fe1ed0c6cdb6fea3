"""EventVGGT: street renderer depth, network, losses, teacher loading, training/eval and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vision3d_kd.cameras import Cameras, look_at
from vision3d_kd.distill.event_vggt.clips import EventClips
from vision3d_kd.distill.event_vggt.evaluate import evaluate_depth
from vision3d_kd.distill.event_vggt.losses import TokenProjector, si_log_loss, stfd_loss, stfd_relation_loss, tcd_loss
from vision3d_kd.distill.event_vggt.model import GeometryNet, NetConfig
from vision3d_kd.distill.event_vggt.street import StreetScene, render_street
from vision3d_kd.distill.event_vggt.teacher import load_geometry_teacher
from vision3d_kd.distill.event_vggt.train import DistillConfig, train_network
from vision3d_kd.errors import ConfigError, RunError

from .conftest import one_line_error, run_cli


def _scene(boxes: list[tuple[list[float], list[float]]]) -> StreetScene:
    lo = torch.tensor([b[0] for b in boxes]).reshape(-1, 3)
    hi = torch.tensor([b[1] for b in boxes]).reshape(-1, 3)
    return StreetScene(lo, hi, torch.full((len(boxes), 3), 0.5), torch.zeros(0, 4), torch.zeros(0, 3),
                       torch.tensor([0.4, 0.4, 0.4]), 0)


def _camera(eye: list[float], target: list[float], size: int = 17) -> Cameras:
    c2w = look_at(torch.tensor([eye]), torch.tensor([target]))
    return Cameras(c2w, 10.0, 10.0, size / 2, size / 2, size, size)


def test_street_depth_is_exact_z_depth() -> None:
    ground = _scene([])
    _, depth = render_street(ground, _camera([0, 0, 1.5], [0, 0, 0]), 0)  # straight down
    assert torch.allclose(depth, torch.full_like(depth, 1.5), atol=1e-4)
    wall = _scene([([10.0, -50.0, 0.0], [11.0, 50.0, 50.0])])
    rgb, depth = render_street(wall, _camera([2.0, 0.0, 1.5], [3.0, 0.0, 1.5]), 0)
    assert torch.allclose(depth[:9], torch.full_like(depth[:9], 8.0), atol=1e-4)  # a wall facing the camera
    # the bottom row looks 0.8 down per unit forward (pixel centre 16.5, cy 8.5, fy 10): ground at z-depth 1.5/0.8
    assert torch.allclose(depth[16], torch.full_like(depth[16], 1.875), atol=1e-4)
    _, depth = render_street(_scene([]), _camera([0, 0, 1.5], [1, 0, 1.5]), 0)
    assert (depth[:8] == 0).all() and (depth[9:] > 0).all()  # sky above the horizon has no depth
    assert rgb.shape == (17, 17, 3) and 0 <= rgb.min() and rgb.max() <= 1


def test_network_shapes_and_token_taps() -> None:
    net = GeometryNet(NetConfig(in_channels=5, dim=32, heads=2, depth=2, patch=8, features=16))
    out = net(torch.randn(2, 3, 5, 16, 24))
    assert out["depth"].shape == (2, 3, 16, 24) and (out["depth"] > 0).all() and (out["confidence"] >= 1).all()
    assert len(out["tokens"]) == 2 and out["tokens"][0].shape == (2, 3, 6, 32) and out["grid"] == (2, 3)
    assert net.taps == [0, 0, 1, 1]
    with pytest.raises(ConfigError, match="divisible"):
        net(torch.randn(1, 2, 5, 15, 24))


def test_losses_have_their_invariances() -> None:
    t = torch.rand(2, 3, 4, 5) * 3
    assert si_log_loss(t + math.log(2.0), t, lam=1.0) < 1e-3  # a global scale costs nothing at lam = 1
    assert si_log_loss(t + math.log(2.0), t, lam=0.0) == pytest.approx(math.log(2.0), rel=1e-3)
    assert tcd_loss(t + 0.7, t) < 1e-6 and tcd_loss(t + torch.arange(3.0)[None, :, None, None], t) == pytest.approx(1.0)
    proj = TokenProjector(8, 8, 1)
    with torch.no_grad():
        proj.to_teacher[0].weight.copy_(torch.eye(8))
        proj.to_teacher[0].bias.zero_()
    tok = torch.nn.functional.layer_norm(torch.randn(2, 3, 5, 8), (8,))
    assert stfd_loss([tok], [tok * 3 + 0.0], proj) < 1e-4  # teacher tokens are layer-normalised first


def test_relational_stfd_ignores_the_feature_basis_but_not_the_relations() -> None:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 3, 5, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert stfd_relation_loss([teacher @ q * 2.5], [teacher]) < 1e-10  # rotated and scaled: same relations
    narrow = teacher[..., :8]  # a teacher of another width, embedded isometrically into the student's 16
    assert stfd_relation_loss([narrow @ q[:8]], [narrow]) < 1e-10
    shuffled = teacher[:, :, torch.randperm(5, generator=g)]
    assert stfd_relation_loss([shuffled], [teacher]) > 1e-2  # tokens moved to other patches: different
    assert stfd_relation_loss([torch.randn(2, 3, 5, 8, generator=g)], [teacher]) > 1e-2
    student = torch.randn(2, 3, 5, 8, generator=g, requires_grad=True)
    stfd_relation_loss([student], [teacher]).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_teacher_loading_errors(tmp_path: Path, event_runs) -> None:
    with pytest.raises(RunError, match="teacher not found"):
        load_geometry_teacher(tmp_path / "none")
    (tmp_path / "vggt" / "models").mkdir(parents=True)
    with pytest.raises(RunError, match="--teacher-weights"):
        load_geometry_teacher(tmp_path)
    with pytest.raises(RunError, match="not a VGGT checkout"):
        load_geometry_teacher(tmp_path / "vggt", tmp_path / "w.pt")
    with pytest.raises(RunError, match="not an RGB teacher"):
        load_geometry_teacher(event_runs["student"])
    teacher, info = load_geometry_teacher(event_runs["teacher"])
    out = teacher(torch.rand(1, 4, 3, 32, 48))
    assert info["teacher"] == "bundled" and len(out["tokens"]) == 4 and out["depth"].shape == (1, 4, 32, 48)


def test_teacher_learns_depth_and_student_learns_from_it(tmp_path: Path) -> None:
    """A real outcome at toy size: on a held-out street, the teacher trained on RGB + depth beats the best
    constant depth, and the student distilled from it (never reading depth) beats it too."""
    from vision3d_kd.distill.event_vggt.simulate import SimConfig, simulate_dataset

    cfg = SimConfig(height=32, width=48, seconds=0.6, fps=40, frame_rate=20, supersample=1)
    simulate_dataset(tmp_path / "train", 3, 0, cfg)
    simulate_dataset(tmp_path / "test", 1, 500, cfg)
    net = dict(dim=32, heads=2, depth=2, patch=8, features=16)
    train_network(tmp_path / "train", tmp_path / "teacher", DistillConfig(
        input="rgb", supervision="gt", steps=100, batch=2, lr=2e-3, si_lambda=0.5, net=NetConfig(**net)),
        show_progress=False)
    teacher, info = load_geometry_teacher(tmp_path / "teacher")
    test = EventClips(tmp_path / "test", 4, 5)
    constant = evaluate_depth(lambda x: torch.ones(x.shape[0], x.shape[1], *x.shape[-2:]), test, "rgb", 4)
    taught = evaluate_depth(lambda x: teacher(x)["depth"], test, "rgb", 4)
    assert taught["abs_rel"] < 0.5 * constant["abs_rel"], (taught, constant)

    train = EventClips(tmp_path / "train", 4, 5)
    for s in train.seqs:  # distillation must not read ground truth: poison it
        s.depth.fill_(float("nan"))
    monkey = pytest.MonkeyPatch()
    monkey.setattr("vision3d_kd.distill.event_vggt.train.EventClips", lambda *a, **k: train)
    try:
        train_network(tmp_path / "train", tmp_path / "student", DistillConfig(
            steps=100, batch=2, lr=2e-3, net=NetConfig(**net)), teacher, info, show_progress=False)
    finally:
        monkey.undo()
    from vision3d_kd.distill.event_vggt.teacher import load_net

    student, _ = load_net(tmp_path / "student")
    learned = evaluate_depth(lambda x: student(x)["depth"], test, "events", 4)
    assert learned["abs_rel"] < 0.75 * constant["abs_rel"], (learned, constant)
    log = [json.loads(line) for line in (tmp_path / "student" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["depth"] < log[0]["depth"] and {"stfd", "cmfm", "tcd"} <= log[-1].keys()


def test_cli_distill_eval_predict_and_resume(tmp_path: Path, capsys, event_runs) -> None:
    train, test, teacher = (str(event_runs[k]) for k in ("train", "test", "teacher"))
    run = tmp_path / "s"
    args = ["event-depth", "distill", train, "--out", str(run), "--teacher", teacher, "--steps", "3", "--batch", "1",
            "--no-cmfm"]
    assert run_cli(args) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "+stfd+tcd" and cfg["steps"] == 3 and cfg["teacher"]["teacher"] == "bundled"
    assert run_cli(args) == 2 and "--resume" in capsys.readouterr().err
    assert run_cli(args[:-5] + ["--steps", "5", "--batch", "1", "--no-cmfm", "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["steps"] == 5
    assert run_cli(args[:-1] + ["--resume"]) == 2  # other switches than the run was made with
    assert "other settings" in capsys.readouterr().err
    assert run_cli(["event-depth", "eval", str(run), "--data", test]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"abs_rel_test", "err30_test", "jitter_test", "delta1_test"} <= metrics.keys() and metrics["steps"] == 5
    out = tmp_path / "d.npz"
    events = str(event_runs["test"] / "seq_0000" / "events.npz")
    assert run_cli(["event-depth", "predict", str(run), "--events", events, "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["depth"].shape[1:] == (32, 48) and len(f["depth"]) == len(f["times"]) >= 4
        assert np.isfinite(f["depth"]).all() and (f["depth"] > 0).all()
    capsys.readouterr()
    assert run_cli(["event-depth", "distill", train, "--out", str(tmp_path / "x"), "--teacher",
                    str(tmp_path / "nope")]) == 2
    one_line_error(capsys, "nope")
    assert run_cli(["event-depth", "simulate", "--out", str(tmp_path / "d"), "--fps", "30", "--frame-rate", "20"]) == 2
    assert "multiple" in one_line_error(capsys, "--fps") and not (tmp_path / "d").exists()
    assert run_cli(["event-depth", "eval", str(run), "--data", str(tmp_path / "nodata")]) == 2
    one_line_error(capsys, "nodata")


def test_bench_event_vggt_rows_and_summary(tmp_path: Path, event_runs) -> None:
    from vision3d_kd.bench.event_vggt import ROWS, run
    from vision3d_kd.distill.event_vggt.simulate import SimConfig

    sim = SimConfig(height=32, width=48, seconds=0.3, fps=40, frame_rate=20, supersample=1)
    net = NetConfig(dim=32, heads=2, depth=2, patch=8, features=16)
    result = run(quick=True, teacher_path=event_runs["teacher"], runs_dir=tmp_path, steps=2, sim=sim, net=net,
                 progress=lambda s: None)
    names = [r["method"] for r in result["rows"]]
    assert names[0].startswith("teacher") and names[1:] == [r[0] for r in ROWS]
    for row in result["rows"]:
        assert all(math.isfinite(row[k]) for k in ("err10", "err30", "abs_rel", "delta1", "jitter"))
    s = result["summary"]
    assert {"err30_full_mean", "err30_full_std", "err30_output_only_mean", "err30_gt_supervised", "jitter_full",
            "jitter_no_tcd", "err30_raw_full_mean", "err30_ramnet_full_mean", "full_beats_output_only"} <= s.keys()
    assert s["err30_full_mean"] == result["rows"][-1]["err30"] and s["jitter_no_tcd"] == result["rows"][-2]["jitter"]
    assert s["split"] == "validation" and s["val_test_disjoint"] is True
    assert s["full_beats_output_only"] is False  # one seed: no spread to beat, so never "better"
    # two seeds on the test streets: the seed-0 students are reused (trained once, scored on either split)
    two = run(quick=True, teacher_path=event_runs["teacher"], runs_dir=tmp_path, steps=2, sim=sim, net=net,
              progress=lambda s: None, split="test", seeds=2)
    assert (tmp_path / "full-seed1" / "weights.safetensors").is_file() and (tmp_path / "data_test").is_dir()
    assert all(r["seeds"] == 2 for r in two["rows"][1:]) and two["rows"][-1]["err30_std"] >= 0
    again = run(quick=True, teacher_path=event_runs["teacher"], runs_dir=tmp_path, steps=2, sim=sim, net=net,
                progress=lambda s: None)  # finished runs are reused, so the numbers repeat exactly
    assert again["rows"] == result["rows"]
    with pytest.raises(RunError, match="other settings"):  # a run made under other settings is not reused
        run(quick=True, teacher_path=event_runs["teacher"], runs_dir=tmp_path, steps=2, sim=sim,
            net=NetConfig(dim=32, heads=2, depth=2, patch=8, features=8), progress=lambda s: None)
    # a variant of one row trains beside the defaults' runs, under its own folder and name, with its setting
    tokens = run(quick=True, teacher_path=event_runs["teacher"], runs_dir=tmp_path, steps=2, sim=sim, net=net,
                 progress=lambda s: None, variant={"stfd_mode": "tokens"}, rows=["full"])
    assert [r["method"] for r in tokens["rows"]][1:] == ["full: +STFD+CMFM+TCD (stfd_mode=tokens)"]
    cfg = json.loads((tmp_path / "full+stfd_mode=tokens" / "config.json").read_text())["distill"]
    assert cfg["stfd_mode"] == "tokens" and json.loads((tmp_path / "full" / "config.json").read_text())[
        "distill"]["stfd_mode"] == "relations"
    s = tokens["summary"]
    assert s["variant"] == "stfd_mode=tokens" and "err30_full_mean" in s and "full_beats_output_only" not in s
    with pytest.raises(RunError, match="not a variant option"):
        run(quick=True, teacher_path=event_runs["teacher"], runs_dir=tmp_path, steps=2, sim=sim, net=net,
            progress=lambda s: None, variant={"steps": 3})


def test_simulated_data_resumes_and_refuses_other_settings(tmp_path: Path, event_runs) -> None:
    from vision3d_kd.distill.event_vggt.simulate import SimConfig, simulate_dataset

    cfg = SimConfig(height=32, width=48, seconds=0.3, fps=40, frame_rate=20, supersample=1)
    data = event_runs["train"]
    before = (data / "seq_0000" / "events.npz").stat().st_mtime_ns
    assert simulate_dataset(data, 2, 0, cfg) == [data / "seq_0000", data / "seq_0001"]  # nothing redone
    assert (data / "seq_0000" / "events.npz").stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="other settings"):
        simulate_dataset(data, 2, 0, SimConfig(height=32, width=48, seconds=0.3, fps=40, frame_rate=20))
    with np.load(data / "seq_0001" / "frames.npz") as f:
        assert f["rgb"].shape == (7, 32, 48, 3) and f["depth"].shape == (7, 32, 48) and f["c2w"].shape == (7, 4, 4)
        assert np.allclose(np.diff(f["times"]), 0.05) and (f["depth"] >= 0).all() and (f["depth"] > 0).mean() > 0.5
    with pytest.raises(ConfigError, match="contrast"):
        SimConfig(events={"contrast": 0.0})


_FAKE_VGGT = '''
import torch
from torch import nn


class _Aggregator(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 14 * 14, 8)

    def forward(self, images):
        b, s, _, h, w = images.shape
        p = images.unfold(3, 14, 14).unfold(4, 14, 14).permute(0, 1, 3, 4, 2, 5, 6)
        tok = self.proj(p.reshape(b, s, (h // 14) * (w // 14), -1))
        tok = torch.cat([torch.zeros(b, s, 5, 8), tok], 2)  # 5 camera/register tokens first
        return [tok * (k + 1) for k in range(24)], 5


class _DepthHead(nn.Module):
    def forward(self, tokens, images, patch_start_idx):
        b, s, _, h, w = images.shape
        return images.mean(2)[..., None] + 1.0, torch.full((b, s, h, w), 2.0)


class VGGT(nn.Module):
    def __init__(self):
        super().__init__()
        self.aggregator = _Aggregator()
        self.depth_head = _DepthHead()
'''


def test_vggt_teacher_adapter_on_a_stand_in_checkout(tmp_path: Path, event_runs) -> None:
    """The loader and adapter for the real VGGT, exercised with a stand-in module of the same interface
    (the real weights cannot be downloaded here): tokens of 4 layers without the 5 camera/register tokens,
    depth resized back to the frames, usable as a distillation teacher."""
    from safetensors.torch import save_file

    pkg = tmp_path / "vggt_checkout" / "vggt" / "models"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "vggt.py").write_text(_FAKE_VGGT)
    torch.manual_seed(0)
    state = {"aggregator.proj.weight": torch.randn(8, 588) * 0.01, "aggregator.proj.bias": torch.zeros(8)}
    save_file(state, str(tmp_path / "model.safetensors"))
    teacher, info = load_geometry_teacher(tmp_path / "vggt_checkout", tmp_path / "model.safetensors")
    assert info["teacher"] == "vggt"
    frames = torch.rand(1, 2, 3, 32, 48)
    out = teacher(frames)
    assert out["grid"] == (25, 37) and len(out["tokens"]) == 4
    assert out["tokens"][0].shape == (1, 2, 25 * 37, 8)
    assert torch.allclose(out["tokens"][3], out["tokens"][0] * 24 / 5)  # layers 4 and 23 of the stand-in
    assert out["depth"].shape == (1, 2, 32, 48)
    expect = (frames.clamp(0, 1) ** (1 / 2.2)).mean(2) + 1.0
    assert (out["depth"] - expect).abs().mean() < 0.05  # resized there and back
    run = tmp_path / "student"
    train_network(event_runs["train"], run, DistillConfig(steps=2, batch=1, net=NetConfig(dim=32, heads=2, depth=2,
                  patch=8, features=16)), teacher, info, show_progress=False)
    assert json.loads((run / "config.json").read_text())["teacher"]["teacher"] == "vggt"


def test_student_starts_from_the_teacher() -> None:
    from vision3d_kd.distill.event_vggt.losses import TokenProjector
    from vision3d_kd.distill.event_vggt.teacher import NetTeacher
    from vision3d_kd.distill.event_vggt.train import _init_from_teacher

    small = dict(dim=32, heads=2, depth=2, patch=8, features=16)
    teacher = NetTeacher(GeometryNet(NetConfig(in_channels=3, **small)))
    student = GeometryNet(NetConfig(in_channels=5, **small))
    proj = TokenProjector(32, 32, 3)
    _init_from_teacher(student, proj, teacher)
    t_sd, s_sd = teacher.net.state_dict(), student.state_dict()
    assert all(torch.equal(t_sd[k], s_sd[k]) for k in t_sd if not k.startswith("embed_conv.weight"))
    assert s_sd["embed_conv.weight"].shape[1] == 5
    x = torch.randn(2, 4, 32)
    assert torch.allclose(proj.to_teacher[1](x), x) and torch.allclose(proj.to_student(x), x)
    with pytest.raises(ConfigError, match="architecture"):
        _init_from_teacher(GeometryNet(NetConfig(in_channels=5, **{**small, "dim": 48, "heads": 2})), proj, teacher)


def test_ramnet_alignment_clips_the_prediction_and_averages_per_frame():
    """RAM-Net's convention on known depths: no scale, predictions clipped to 80 m, pixels predicted beyond the
    frame's farthest ground truth dropped, errors averaged per frame (not pooled over the sequence)."""
    from vision3d_kd.distill.event_vggt.evaluate import _sequence_metrics

    gt = torch.full((2, 2, 4), 20.0)
    gt[1, 0, :] = 5.0  # frame 1: four near pixels
    pred = gt.clone()
    pred[0, 0, 0] = 26.0  # frame 0: 6 m too far, beyond the frame's farthest gt (20 m): dropped
    pred[0, 1, 0] = 14.0  # 6 m short: kept
    pred[1, 0, 0] = 7.0  # frame 1: a near pixel 2 m off
    pred[1, 1, 1] = 500.0  # clipped to 80 m, then dropped (beyond the frame's farthest gt)
    seq = type("Seq", (), {"depth": gt})()
    ram = _sequence_metrics(pred, seq, "ramnet", 80.0)
    assert ram["err30"] == pytest.approx((6 / 7 + 2 / 7) / 2) and ram["scale"] == 1.0  # 7 pixels in each frame
    raw = _sequence_metrics(pred, seq, "none", 80.0)  # pooled over the sequence, unclipped: all 16 pixels count
    assert raw["err30"] == pytest.approx((6 + 6 + 2 + 480) / 16)
