"""The one training driver: fit (fields and splats), convert, generate and event distillation are each a
`TrainTask` (one step of their method, their own state) that `train()` runs.

The driver owns what every trainer shares: the step loop with a wall-clock budget, `log.jsonl`, a
progress bar, periodic checkpoints and one on Ctrl-C, resuming from the last checkpoint, weight
snapshots, the final metrics (steps, seconds, peak memory) in RUN/metrics.json, and seeding. Seeding
uses per-run generators: `seeded_init(seed)` makes module initialisation reproducible without touching
the process's global RNG, and `make_generator(seed)` draws everything else. Only rank 0 writes files or
shows progress, so the same task runs under data-parallel training.
"""

from __future__ import annotations

import contextlib
import resource
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import write_json
from .loop import LoopConfig, TrainLoop

__all__ = ["LoopConfig", "StepResult", "TrainTask", "train", "make_generator", "seeded_init", "peak_memory_mb"]


@dataclass
class StepResult:
    """What one step reports: a log record, a short progress-bar text, and whether to log it even off the
    `log_every` grid (e.g. the step that densified)."""

    record: dict[str, Any]
    info: str = ""
    force_log: bool = False


class TrainTask(ABC):
    """One method's training: its step and its state. `train()` runs it."""

    name: str = "train"

    @abstractmethod
    def step(self, step: int, progress: float) -> StepResult:
        """Run optimisation step `step` (0-based) at schedule position `progress` in [0, 1]."""

    @abstractmethod
    def save(self, out: Path, meta: dict[str, Any]) -> None:
        """Checkpoint everything `restore` needs into RUN `out`; `meta` = {"step", "elapsed"} to keep."""

    @abstractmethod
    def restore(self, out: Path) -> dict[str, Any]:
        """Load the state `save` wrote; returns its meta (at least "step" and "elapsed")."""

    def snapshot(self, path: Path) -> None:
        """Write the current weights as a run directory at `path` (learning curves). Default: none."""
        raise NotImplementedError

    def finish(self, out: Path) -> dict[str, Any]:
        """Metrics after the last step (e.g. held-out evaluation); merged into RUN/metrics.json."""
        return {}


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with `seed` for everything a run draws (the process's global RNG is never used)."""
    return torch.Generator(device=device).manual_seed(int(seed))


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Within the block, the global CPU RNG (what `nn.Module` initialisers draw from) starts at `seed`;
    after it, the global RNG is as before, so runs do not affect each other."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(task: TrainTask, out: Path, loop_cfg: LoopConfig, *, resume: bool = False, rank: int = 0,
          show_progress: bool = True, callback: Callable[[int, dict[str, Any]], None] | None = None,
          metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `task` for `loop_cfg.steps` steps (or until `max_seconds`) writing RUN `out`; with `resume`,
    continue from its last checkpoint. `callback(step, record)` runs after every step (tests use it to
    simulate a crash). Returns {"steps", "seconds" (training, across resumes), "seconds_this_session",
    **metrics, **task.finish(out), "peak_memory_mb"}, also written to RUN/metrics.json by rank 0; other ranks
    skip `finish` (the evaluation) and write nothing."""
    out = Path(out)
    writer = rank == 0
    step, elapsed = 0, 0.0
    if resume:
        meta = task.restore(out)
        step, elapsed = int(meta["step"]), float(meta["elapsed"])

    def checkpoint(at_step: int, seconds: float) -> None:
        if writer:
            task.save(out, {"step": at_step, "elapsed": seconds})

    snap = task.snapshot if writer and type(task).snapshot is not TrainTask.snapshot else None
    loop = TrainLoop(out, task.name, loop_cfg, checkpoint, start_step=step, elapsed_before=elapsed, resume=resume,
                     writer=writer, show_progress=show_progress, callback=callback, snapshot=snap)
    with loop:
        while loop.running():
            result = task.step(loop.step, loop.progress())
            loop.end_step(result.record, result.info, force_log=result.force_log)
    session = loop.elapsed - elapsed
    summary = {"steps": loop.step, "seconds": round(loop.elapsed, 2), "seconds_this_session": round(session, 2),
               **(metrics or {}), **(task.finish(out) if writer else {})}  # held-out evaluation once, on rank 0
    summary["peak_memory_mb"] = peak_memory_mb()
    if writer:
        write_json(out / "metrics.json", summary)
    return summary
