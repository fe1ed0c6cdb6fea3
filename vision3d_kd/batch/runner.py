"""Running one job of a batch: `python -m vision3d_kd.cli.main ARGS` in the jobs file's folder, as its own
process (a crash, an out-of-memory kill or a bad input stays inside the job), with its threads capped, its
output in STATE/logs/NAME.log and its state in STATE/jobs/NAME.json (written atomically: status running /
done / failed, attempts, pid, seconds, exit code, the last line of its error output).

A failed attempt is retried once; a resumable command (generate, fit, convert) whose output exists then
continues with --resume. A job is finished when its state says done with the same arguments and its output
exists: re-running a batch skips it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..checkpoint import write_json
from .jobs import RESUMABLE, Job

__all__ = ["JobRunner"]


class JobRunner:
    """Runs jobs whose relative paths start at `root`, keeping state under `state` with `threads` CPU
    threads per job (OMP/MKL/torch) and `attempts` tries each."""

    def __init__(self, root: Path, state: Path, threads: int = 1, attempts: int = 2) -> None:
        self.root, self.state, self.threads, self.attempts = Path(root), Path(state), int(threads), int(attempts)
        (self.state / "jobs").mkdir(parents=True, exist_ok=True)
        (self.state / "logs").mkdir(parents=True, exist_ok=True)

    def record_path(self, job: Job) -> Path:
        return self.state / "jobs" / f"{job.name}.json"

    def record(self, job: Job) -> dict[str, Any] | None:
        p = self.record_path(job)
        try:
            return json.loads(p.read_text()) if p.is_file() else None
        except json.JSONDecodeError:
            return None

    def finished(self, job: Job) -> bool:
        rec = self.record(job)
        return bool(rec and rec.get("status") == "done" and rec.get("args") == job.args
                    and (self.root / job.out).exists())

    def _attempt_args(self, job: Job, attempt: int) -> list[str]:
        args = list(job.args)
        if attempt > 1 and job.command in RESUMABLE and (self.root / job.out).exists() and "--resume" not in args:
            args.append("--resume")
        return args

    def _env(self, job: Job) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(self.threads)
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(k, None)  # a job is one process, not a rank of the batch's torchrun group
        env.update(job.env)
        return env

    def _write(self, job: Job, rec: dict[str, Any]) -> None:
        write_json(self.record_path(job), rec)

    def run(self, job: Job, worker: str = "local") -> dict[str, Any]:
        """Run `job` (skipped when finished) with up to `attempts` tries; returns its final record."""
        if self.finished(job):
            return {**(self.record(job) or {}), "skipped": True}
        rec: dict[str, Any] = {"name": job.name, "args": job.args, "out": job.out, "attempts": 0, "worker": worker,
                               "seconds": 0.0}
        log = self.state / "logs" / f"{job.name}.log"
        for attempt in range(1, self.attempts + 1):
            args = self._attempt_args(job, attempt)
            t0 = time.perf_counter()
            with log.open("a") as f:
                f.write(f"=== attempt {attempt}: v3kd {' '.join(args)}\n")
                f.flush()
                proc = subprocess.Popen([sys.executable, "-m", "vision3d_kd.cli.main", *args], cwd=self.root,
                                        env=self._env(job), stdout=f, stderr=subprocess.STDOUT)
                rec.update(status="running", attempts=attempt, pid=proc.pid, started=time.time())
                self._write(job, rec)
                code = proc.wait()
            rec["seconds"] = round(rec["seconds"] + time.perf_counter() - t0, 2)
            rec.update(returncode=code, status="done" if code == 0 else "failed")
            if code != 0:
                rec["error"] = _last_line(log) if code > 0 else f"killed by signal {-code}"
            else:
                rec.pop("error", None)
            self._write(job, rec)
            if code == 0:
                break
        rec.pop("pid", None)
        self._write(job, rec)
        return rec


def _last_line(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1][-300:] if lines else ""
