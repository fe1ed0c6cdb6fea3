"""Event simulator, voxel grid, event files (incl. the shared bad inputs) and depth metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vision3d_kd.distill.event_vggt.event_io import load_events, save_events
from vision3d_kd.distill.event_vggt.events import Events, EventSimConfig, EventSimulator, voxel_grid
from vision3d_kd.errors import DataError
from vision3d_kd.metrics import (
    EVENTSCAPE_LOG_DEPTH,
    MVSEC_LOG_DEPTH,
    depth_from_normalized_log,
    depth_metrics,
    median_scale,
    normalized_log_depth,
    temporal_jitter,
)

from .conftest import BAD_INPUTS, need_shared, one_line_error, run_cli

EXACT = EventSimConfig(contrast=0.2, mismatch=0.0, refractory_s=0.0)


def _run(sim: EventSimulator, frames: list[torch.Tensor], times: list[float]) -> Events:
    chunks = [sim.step(f, t) for f, t in zip(frames, times, strict=True)]
    return Events(*(np.concatenate([getattr(c, k) for c in chunks]) for k in "xytp"), sim.w, sim.h)


def test_static_scene_emits_no_events() -> None:
    sim = EventSimulator(6, 8, EventSimConfig(mismatch=0.03, refractory_s=1e-3), seed=1)
    frame = torch.rand(6, 8).log()
    ev = _run(sim, [frame] * 20, [i / 100 for i in range(20)])
    assert len(ev) == 0


@pytest.mark.parametrize("k,sign", [(1, 1), (3, 1), (7, 1), (4, -1)])
def test_log_ramp_gives_k_events_of_the_right_polarity(k: int, sign: int) -> None:
    sim = EventSimulator(3, 4, EXACT)
    base = torch.full((3, 4), -1.0)
    steps = 10
    frames = [base + sign * k * 0.2 * i / steps for i in range(steps + 1)]
    ev = _run(sim, frames, [i * 0.01 for i in range(steps + 1)])
    assert len(ev) == k * 12
    assert (ev.p == sign).all()
    counts = np.bincount(ev.y * 4 + ev.x, minlength=12)
    assert (counts == k).all()
    # crossing j happens at the linear-interpolation time j/k of the ramp (0.1 s long)
    expected = np.repeat(np.arange(1, k + 1) / k * 0.1, 12)
    assert np.allclose(np.sort(ev.t), expected, atol=1e-9)


def test_several_events_in_one_interval_and_refractory_period() -> None:
    frames = [torch.zeros(1, 1), torch.full((1, 1), 0.65)]  # 3 crossings in one 10 ms interval
    ev = _run(EventSimulator(1, 1, EXACT), frames, [0.0, 0.01])
    assert len(ev) == 3 and np.allclose(ev.t, [0.2 / 0.65 * 0.01, 0.4 / 0.65 * 0.01, 0.6 / 0.65 * 0.01])
    slow = EventSimConfig(contrast=0.2, mismatch=0.0, refractory_s=0.005)
    ev = _run(EventSimulator(1, 1, slow), frames, [0.0, 0.01])
    assert len(ev) == 2 and ev.t[1] - ev.t[0] >= 0.005  # the middle crossing fell in the refractory period


def test_noise_events_have_the_configured_rate() -> None:
    sim = EventSimulator(20, 20, EventSimConfig(mismatch=0.0, noise_rate_hz=50.0), seed=3)
    frame = torch.zeros(20, 20)
    ev = _run(sim, [frame] * 11, [i * 0.1 for i in range(11)])
    assert abs(len(ev) - 50 * 400 * 1.0) < 5 * math.sqrt(20000)
    assert set(np.unique(ev.p)) == {-1, 1} and (np.diff(ev.t) >= 0).all()


def _events(n: int = 400, seed: int = 0, w: int = 8, h: int = 6) -> Events:
    g = np.random.default_rng(seed)
    return Events(g.integers(0, w, n), g.integers(0, h, n), np.sort(g.random(n)), g.choice([-1, 1], n).astype(np.int8),
                  w, h)


def test_voxel_bins_sum_to_polarity_sums() -> None:
    ev = _events()
    grid = voxel_grid(ev, 5, 0.0, 1.0, normalize=False)
    sums = np.zeros((6, 8))
    np.add.at(sums, (ev.y, ev.x), ev.p)
    assert torch.allclose(grid.sum(0).double(), torch.from_numpy(sums), atol=1e-5)


def test_one_event_splits_between_neighbouring_bins() -> None:
    ev = Events(np.array([2]), np.array([1]), np.array([1.5 / 4]), np.array([1], np.int8), 4, 3)
    grid = voxel_grid(ev, 5, 0.0, 1.0, normalize=False)
    assert grid[1, 1, 2] == pytest.approx(0.5) and grid[2, 1, 2] == pytest.approx(0.5)
    assert grid.abs().sum() == pytest.approx(1.0)


def test_voxel_normalisation_over_nonzero_entries() -> None:
    grid = voxel_grid(_events(), 5, 0.0, 1.0)
    nz = grid[grid != 0]
    assert abs(float(nz.mean())) < 1e-5 and float(nz.std()) == pytest.approx(1.0, abs=1e-4)
    assert (grid == 0).sum() == (voxel_grid(_events(), 5, 0.0, 1.0, normalize=False) == 0).sum()


def test_event_files_round_trip(tmp_path: Path) -> None:
    ev = _events()
    save_events(tmp_path / "e.npz", ev)
    back = load_events(tmp_path / "e.npz")
    assert (back.x == ev.x).all() and (back.p == ev.p).all() and np.allclose(back.t, ev.t) and back.width == 8
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "e.h5", "w") as f:  # 0/1 polarities, microseconds, size given by the caller
        for k, v in (("x", ev.x), ("y", ev.y), ("t", ev.t * 1e6), ("p", (ev.p > 0).astype(np.uint8))):
            f[f"events/{k}"] = v
    back = load_events(tmp_path / "e.h5", width=8, height=6, time_scale=1e-6)
    assert (back.p == ev.p).all() and np.allclose(back.t, ev.t)


@pytest.mark.parametrize("arrays,message", [
    (dict(x=[0], y=[0], t=[float("nan")], p=[1]), "NaN"),
    (dict(x=[0, 1], y=[0], t=[0.0], p=[1]), "different lengths"),
    (dict(x=[0], y=[0], t=[0.0], p=[3]), "polarities"),
    (dict(x=[0], y=[-1], t=[0.0], p=[1]), "outside"),
])
def test_bad_event_arrays(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", width=4, height=4, **{k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(DataError, match=message):
        load_events(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_events(tmp_path / "junk.npz")


@pytest.mark.parametrize("entry,problem", [("events_unsorted.npz", "timestamps decrease"),
                                           ("events_out_of_bounds.npz", "outside the 16x12 sensor"),
                                           ("events_missing_polarity.npz", "no 'p' array")])
def test_shared_bad_event_files(tmp_path: Path, capsys, event_runs, entry: str, problem: str) -> None:
    path = need_shared(BAD_INPUTS / entry)
    with pytest.raises(DataError, match=problem):
        load_events(path)
    out = tmp_path / "depth.npz"
    assert run_cli(["event-depth", "predict", str(tmp_path / "no_run"), "--events", str(path), "--out", str(out)]) == 2
    capsys.readouterr()
    run = event_runs["student"]
    assert run_cli(["event-depth", "predict", str(run), "--events", str(path), "--out", str(out)]) == 2
    assert problem in one_line_error(capsys, str(path))
    assert not out.exists() and not list(tmp_path.glob(".depth.npz*"))


def test_depth_metrics_on_known_answers() -> None:
    gt = torch.tensor([[5.0, 15.0], [25.0, 50.0]])
    m = depth_metrics(gt.clone(), gt)
    assert m["abs_rel"] == 0 and m["rmse"] == 0 and m["delta1"] == 1 and m["err30"] == 0
    m = depth_metrics(gt * 1.1, gt)
    assert m["abs_rel"] == pytest.approx(0.1) and m["sq_rel"] == pytest.approx(float((0.01 * gt).mean()))
    assert m["delta1"] == 1.0 and m["rmse_log"] == pytest.approx(math.log(1.1))
    assert m["err10"] == pytest.approx(0.5) and m["err20"] == pytest.approx(1.0) and m["err30"] == pytest.approx(1.5)
    m = depth_metrics(gt * 1.3, gt)
    assert m["delta1"] == 0 and m["delta2"] == 1
    sky = torch.tensor([[0.0, 10.0]])  # 0 = no ground truth: ignored
    assert depth_metrics(torch.tensor([[99.0, 10.0]]), sky)["abs_rel"] == 0
    assert median_scale(gt * 0.5, gt, gt > 0) == pytest.approx(2.0)


def test_normalized_log_depth_and_jitter() -> None:
    for d_max, alpha in (MVSEC_LOG_DEPTH, EVENTSCAPE_LOG_DEPTH):
        d = torch.tensor([d_max, d_max * math.exp(-alpha), 7.0])
        n = normalized_log_depth(d, d_max, alpha)
        assert n[0] == pytest.approx(1.0) and n[1] == pytest.approx(0.0, abs=1e-6)
        assert depth_from_normalized_log(n, d_max, alpha)[2] == pytest.approx(7.0, rel=1e-5)
    gt = torch.rand(4, 3, 3) * 20 + 2
    assert temporal_jitter(gt.clone(), gt) == 0
    offsets = torch.tensor([0.0, 1.0, -1.0, 0.5])[:, None, None]
    assert temporal_jitter(gt + offsets, gt) == pytest.approx((1 + 2 + 1.5) / 3)
