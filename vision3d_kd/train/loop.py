"""Bookkeeping every trainer shares: step counter, wall-clock budget, `log.jsonl`, a rich progress bar,
periodic checkpoints, a checkpoint on Ctrl-C and after the last step, a per-step callback and optional
weight snapshots every N training seconds (`RUN/snapshots/<seconds>s/`, for learning curves)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .state import truncate_log

__all__ = ["LoopConfig", "TrainLoop"]


@dataclass
class LoopConfig:
    """How long and how often: `steps`, a wall-clock budget `max_seconds` (0 = none; schedules follow
    max(step, time) progress), log / checkpoint every N steps, weight snapshots every N training seconds."""

    steps: int
    max_seconds: float = 0.0
    log_every: int = 25
    checkpoint_every: int = 500
    snapshot_every_seconds: float = 0.0

    @classmethod
    def of(cls, settings: Any) -> LoopConfig:
        """The loop part of any trainer's settings dataclass (missing attributes keep their defaults)."""
        names = ("max_seconds", "log_every", "checkpoint_every", "snapshot_every_seconds")
        return cls(int(settings.steps), **{n: getattr(settings, n) for n in names if hasattr(settings, n)})


class TrainLoop:
    """Use as `with TrainLoop(...) as loop: while loop.running(): ...; loop.end_step(record, info)`.

    `checkpoint(step, elapsed_seconds)` writes everything `--resume` needs; it runs every
    `checkpoint_every` steps, on KeyboardInterrupt (then re-raised) and when the loop ends normally.
    `elapsed` counts training time across resumes (`elapsed_before` from the checkpoint). `writer`
    False (ranks other than 0) writes no log and shows no bar."""

    def __init__(self, out: Path, name: str, cfg: LoopConfig, checkpoint: Callable[[int, float], None], *,
                 start_step: int = 0, elapsed_before: float = 0.0, resume: bool = False, writer: bool = True,
                 show_progress: bool = True, callback: Callable[[int, dict[str, Any]], None] | None = None,
                 snapshot: Callable[[Path], None] | None = None) -> None:
        self.out, self.name, self.steps = Path(out), name, cfg.steps
        self.step, self.elapsed_before, self.max_seconds = start_step, elapsed_before, cfg.max_seconds
        self.log_every, self.checkpoint_every = cfg.log_every, cfg.checkpoint_every
        self._checkpoint, self._callback = checkpoint, callback
        self._resume, self._show, self._writer = resume, show_progress and writer, writer
        every = cfg.snapshot_every_seconds
        self._snapshot, self._snapshot_every = snapshot, every
        self._next_snapshot = (int(elapsed_before // every) + 1) * every if every else 0.0

    def __enter__(self) -> TrainLoop:
        self.out.mkdir(parents=True, exist_ok=True)
        if self._resume and self._writer:
            truncate_log(self.out / "log.jsonl", self.step)
        self._log = open(self.out / "log.jsonl", "a") if self._writer else None
        self._t0 = time.perf_counter()
        cols = [TextColumn(f"[bold]{self.name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}")]
        self._bar = Progress(*cols, disable=not self._show)
        self._bar.__enter__()
        self._task = self._bar.add_task("train", total=self.steps, completed=self.step, info="")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._bar.__exit__(exc_type, exc, tb)
        try:
            if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
                self._checkpoint(self.step, self.elapsed)
        finally:
            if self._log is not None:
                self._log.close()

    @property
    def elapsed(self) -> float:
        """Training seconds so far, including earlier sessions of a resumed run."""
        return self.elapsed_before + time.perf_counter() - self._t0

    def running(self) -> bool:
        """True while steps remain and the wall-clock budget (if any) is not spent."""
        return self.step < self.steps and not (self.max_seconds and self.elapsed >= self.max_seconds)

    def progress(self) -> float:
        """Schedule position in [0, 1]: the larger of the step and the time fraction."""
        frac = self.step / self.steps
        if self.max_seconds:
            frac = max(frac, self.elapsed / self.max_seconds)
        return min(1.0, frac)

    def end_step(self, record: dict[str, Any], info: str = "", force_log: bool = False) -> None:
        """Count one finished step: log `record` (gets step and elapsed), update the bar, checkpoint
        when due, call the callback."""
        self.step += 1
        record = {"step": self.step, **record, "elapsed": round(self.elapsed, 3)}
        if self._log is not None and (force_log or self.step % self.log_every == 0 or self.step == self.steps):
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
        self._bar.update(self._task, completed=self.step, info=info)
        if self.step % self.checkpoint_every == 0 and self.step < self.steps:
            self._checkpoint(self.step, self.elapsed)
        if self._snapshot is not None and self._snapshot_every and self.elapsed >= self._next_snapshot:
            self._take_snapshot()
        if self._callback is not None:
            self._callback(self.step, record)

    def _take_snapshot(self) -> None:
        """Write the weights to RUN/snapshots/<elapsed>s/; the clock is paused while writing."""
        t0 = time.perf_counter()
        self._snapshot(self.out / "snapshots" / f"{self.elapsed:07.1f}s")
        self.elapsed_before -= time.perf_counter() - t0
        while self._next_snapshot <= self.elapsed:
            self._next_snapshot += self._snapshot_every
