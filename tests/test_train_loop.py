"""TrainLoop bookkeeping: logging cadence, checkpoints (periodic, final, on Ctrl-C), budget, progress."""

from __future__ import annotations

import json

import pytest

from vision3d_kd.train.loop import LoopConfig, TrainLoop


def _loop(out, steps, checkpoint, *, max_seconds=0.0, log_every=25, checkpoint_every=500, snapshot_every=0.0,
          **kw):
    cfg = LoopConfig(steps, max_seconds, log_every, checkpoint_every, snapshot_every)
    return TrainLoop(out, "x", cfg, checkpoint, **kw)


def _records(run):
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


def test_logs_checkpoints_and_final_checkpoint(tmp_path):
    saved = []
    seen = []
    with _loop(tmp_path, 10, lambda s, e: saved.append(s), log_every=4, checkpoint_every=3,
                   show_progress=False, callback=lambda s, r: seen.append(s)) as loop:
        while loop.running():
            loop.end_step({"loss": 1.0 / (loop.step + 1)}, force_log=loop.step == 0)
    assert [r["step"] for r in _records(tmp_path)] == [1, 4, 8, 10]
    assert saved == [3, 6, 9, 10] and seen == list(range(1, 11))
    assert all("elapsed" in r and "loss" in r for r in _records(tmp_path))


def test_ctrl_c_checkpoints_then_reraises_and_crash_does_not(tmp_path):
    saved = []
    with pytest.raises(KeyboardInterrupt):
        with _loop(tmp_path / "a", 10, lambda s, e: saved.append(s), show_progress=False) as loop:
            loop.end_step({})
            raise KeyboardInterrupt
    assert saved == [1]
    with pytest.raises(RuntimeError):
        with _loop(tmp_path / "b", 10, lambda s, e: saved.append(s), show_progress=False) as loop:
            raise RuntimeError("crash")
    assert saved == [1]  # a crash keeps the last periodic checkpoint, it does not write a new one


def test_budget_stops_the_loop_and_drives_progress(tmp_path):
    with _loop(tmp_path, 1000, lambda s, e: None, max_seconds=1e-9, elapsed_before=5.0,
                   show_progress=False) as loop:
        assert not loop.running() and loop.progress() == 1.0
    with _loop(tmp_path / "c", 4, lambda s, e: None, show_progress=False) as loop:
        loop.end_step({})
        assert loop.progress() == 0.25


def test_resume_truncates_records_after_the_checkpoint(tmp_path):
    (tmp_path / "log.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (5, 10, 15)))
    with _loop(tmp_path, 12, lambda s, e: None, start_step=10, resume=True, log_every=1,
                   show_progress=False) as loop:
        while loop.running():
            loop.end_step({})
    assert [r["step"] for r in _records(tmp_path)] == [5, 10, 11, 12]


def test_snapshots_every_n_seconds_pause_the_clock(tmp_path, monkeypatch):
    """On a fake clock (a loaded machine cannot stretch it): 21 ms steps, 50 ms snapshot writes."""
    from types import SimpleNamespace

    from vision3d_kd.train import loop as loop_module

    clock = [0.0]
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    taken = []

    def snapshot(path):
        taken.append(path)
        clock[0] += 0.05  # writing time is not training time

    with _loop(tmp_path, 6, lambda s, e: None, show_progress=False, snapshot=snapshot,
                   snapshot_every=0.02) as loop:
        while loop.running():
            clock[0] += 0.021
            loop.end_step({})
    assert len(taken) == 6 and all(p.parent == tmp_path / "snapshots" for p in taken)
    seconds = [float(p.name[:-1]) for p in taken]
    assert seconds == sorted(seconds) and seconds[-1] < 0.2  # 6 x 21 ms of training, sleeps excluded
