"""The training driver: resume after a crash continues where the checkpoint left off (and for a small task
ends where an uninterrupted run ends), ranks other than 0 write nothing, seeding leaves the process's
global RNG alone; the real trainers (a field, splats) resume through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from vision3d_kd.checkpoint import load_tensors, save_tensors
from vision3d_kd.data import load_dataset
from vision3d_kd.train.config import apply_overrides, load_fit_config
from vision3d_kd.train.driver import StepResult, TrainTask, make_generator, seeded_init, train
from vision3d_kd.train.fit import fit
from vision3d_kd.train.loop import LoopConfig
from vision3d_kd.train.state import load_train_state, save_train_state

from .conftest import SMALL_HASHGRID


class LineTask(TrainTask):
    """Fit y = 2x + 1 from noisy random samples by SGD: a task small enough to compare bit for bit."""

    name = "line"

    def __init__(self, seed: int) -> None:
        self.gen = make_generator(seed)
        with seeded_init(seed):
            self.model = torch.nn.Linear(1, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)

    def step(self, step: int, progress: float) -> StepResult:
        x = torch.rand(16, 1, generator=self.gen)
        y = 2 * x + 1 + 0.01 * torch.randn(16, 1, generator=self.gen)
        loss = ((self.model(x) - y) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return StepResult({"loss": loss.item()}, f"loss {loss.item():.3f}")

    def save(self, out: Path, meta: dict[str, Any]) -> None:
        save_tensors(out / "weights.safetensors", self.model.state_dict())
        save_train_state(out, self.opt, meta, self.gen)

    def restore(self, out: Path) -> dict[str, Any]:
        self.model.load_state_dict(load_tensors(out / "weights.safetensors"))
        meta, _ = load_train_state(out, self.opt, self.gen)
        return meta

    def finish(self, out: Path) -> dict[str, Any]:
        return {"weight": float(self.model.weight), "bias": float(self.model.bias)}


def _crash_at(step: int):
    def callback(at: int, record: dict) -> None:
        if at == step:
            raise RuntimeError("simulated crash")
    return callback


def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(tmp_path):
    cfg = LoopConfig(steps=60, log_every=5, checkpoint_every=20)
    whole = train(LineTask(3), tmp_path / "whole", cfg, show_progress=False)
    with pytest.raises(RuntimeError, match="simulated"):
        train(LineTask(3), tmp_path / "run", cfg, show_progress=False, callback=_crash_at(30))
    seen: list[int] = []
    resumed = train(LineTask(3), tmp_path / "run", cfg, resume=True, show_progress=False,
                    callback=lambda s, r: seen.append(s))
    assert seen[0] == 21 and resumed["steps"] == whole["steps"] == 60
    assert (resumed["weight"], resumed["bias"]) == (whole["weight"], whole["bias"])
    assert abs(whole["weight"] - 2) < 0.25 and abs(whole["bias"] - 1) < 0.25  # it did learn the line
    logs = [[json.loads(x) for x in (tmp_path / r / "log.jsonl").read_text().splitlines()] for r in ("whole", "run")]
    assert [(r["step"], r["loss"]) for r in logs[0]] == [(r["step"], r["loss"]) for r in logs[1]]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["peak_memory_mb"] > 0 and metrics["seconds_this_session"] >= 0


def test_other_ranks_train_but_write_nothing(tmp_path):
    out = train(LineTask(0), tmp_path / "rank1", LoopConfig(steps=10, checkpoint_every=5), rank=1,
                show_progress=False)
    assert out["steps"] == 10 and not any((tmp_path / "rank1").iterdir())
    train(LineTask(0), tmp_path / "rank0", LoopConfig(steps=10, checkpoint_every=5), show_progress=False)
    assert {p.name for p in (tmp_path / "rank0").iterdir()} >= {"log.jsonl", "metrics.json", "weights.safetensors"}


def test_seeded_init_is_reproducible_and_leaves_the_global_rng_alone():
    before = torch.random.get_rng_state()
    with seeded_init(7):
        a = torch.nn.Linear(4, 4).weight.detach().clone()
    with seeded_init(7):
        b = torch.nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), before)


FIELD = [*SMALL_HASHGRID, "train.occ_warmup_steps=32", "train.max_seconds=0"]
SPLATS = ["train.init_points=3000", "train.refine_start=50", "train.refine_every=50", "train.refine_stop=250",
          "train.reset_every=0", "train.sh_degree_every=100", "train.max_seconds=0"]


@pytest.mark.parametrize("name,extra,steps", [("hashgrid", FIELD, 40), ("splats", SPLATS, 120)])
def test_the_trainers_resume_after_a_crash_from_the_saved_step(sphere_scene, tmp_path, name, extra, steps):
    train_ds = load_dataset(sphere_scene, "train")
    every = steps // 2
    cfg = apply_overrides(load_fit_config(name), extra + [f"train.steps={steps}", f"train.checkpoint_every={every}",
                                                          "train.log_every=5"])
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated"):
        fit(train_ds, None, run, cfg, callback=_crash_at(every + every // 2), show_progress=False)
    seen: list[int] = []
    m = fit(train_ds, None, run, cfg, resume=True, callback=lambda s, r: seen.append(s), show_progress=False)
    assert seen[0] == every + 1 and m["steps"] == steps
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)) and logged[-1] == steps
