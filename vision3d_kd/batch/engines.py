"""Where a batch's jobs run (`v3kd batch JOBS.yaml --engine ...`), each through `JobRunner` (own process,
one retry, skipped when finished):

- `local`: a pool of `workers` job processes on this machine (default: one per 2 cores' worth of threads);
- `torchrun`: every rank of `torchrun --nproc_per_node N [--nnodes M ...] -m vision3d_kd.cli.main batch ...`
  takes a static share (job i on rank i mod N·M); rank 0 waits for all and writes the summary (the state folder
  must be shared between hosts: a network file system);
- `ray`: one Ray task per job (dynamic scheduling; `cpus`/`gpus` per job; a task whose Ray worker dies is
  resubmitted by Ray once) on the cluster at `address` (default: a local Ray).

The summary (STATE/summary.json and .md): per job its status, attempts, seconds, worker and output; totals
and jobs per hour of wall time."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write, write_json
from ..errors import ConfigError
from ..parallel import dist_env, init_distributed, leave_distributed, shard
from .jobs import Job, read_jobs
from .runner import JobRunner

__all__ = ["ENGINES", "run_batch", "state_folder"]

ENGINES = ("local", "torchrun", "ray")


def state_folder(jobs_file: Path) -> Path:
    """Default state folder of a jobs file: JOBS.batch beside JOBS.yaml."""
    jobs_file = Path(jobs_file)
    return jobs_file.with_name(jobs_file.stem + ".batch")


def _local(jobs: list[Job], runner: JobRunner, workers: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda j: runner.run(j, "local"), jobs))


def _torchrun(jobs: list[Job], runner: JobRunner) -> list[dict[str, Any]] | None:
    env = dist_env()
    if not env.distributed:
        raise ConfigError("--engine torchrun: start the batch with `torchrun --nproc_per_node N -m "
                          "vision3d_kd.cli.main batch ...` (WORLD_SIZE is not set)")
    init_distributed(env, backend="gloo")  # only barriers pass between ranks: gloo on any device
    for job in shard(jobs, env):
        runner.run(job, f"rank{env.rank}")
    leave_distributed()
    if not env.writer:
        return None
    return [{**(runner.record(j) or {"name": j.name, "status": "missing"})} for j in jobs]


def _ray(jobs: list[Job], runner: JobRunner, address: str | None, cpus: float, gpus: float) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'vision3d_kd[ray]' (or pip install ray)") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        @ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1)
        def one(job: Job) -> dict[str, Any]:
            import socket

            return runner.run(job, f"ray:{socket.gethostname()}")

        return ray.get([one.remote(j) for j in jobs])
    finally:
        if started:
            ray.shutdown()


def _markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = "| job | status | attempts | seconds | worker | output |\n|---|---|---|---|---|---|\n"
    body = "".join(f"| {r.get('name')} | {r.get('status')}{' (skipped)' if r.get('skipped') else ''} | "
                   f"{r.get('attempts', 0)} | {r.get('seconds', 0)} | {r.get('worker', '')} | {r.get('out', '')} |\n"
                   for r in rows)
    tail = "\n" + ", ".join(f"{k}: {v}" for k, v in summary.items()) + "\n"
    return head + body + tail


def run_batch(jobs_file: Path, engine: str = "local", state: Path | None = None, workers: int = 2,
              threads: int = 1, address: str | None = None, cpus: float = 1.0, gpus: float = 0.0,
              attempts: int = 2) -> dict[str, Any] | None:
    """Run every unfinished job of `jobs_file` on `engine`; returns {"rows", "summary"} (also written to
    STATE/summary.json and .md) on the process that writes it (None on other torchrun ranks)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 1 or threads < 1 or attempts < 1 or cpus < 0 or gpus < 0:
        raise ConfigError("--workers, --threads and --attempts must be at least 1; --cpus and --gpus not negative")
    jobs_file = Path(jobs_file)
    jobs = read_jobs(jobs_file)
    runner = JobRunner(jobs_file.resolve().parent, Path(state) if state else state_folder(jobs_file), threads,
                       attempts)
    before = {j.name for j in jobs if runner.finished(j)}
    t0 = time.perf_counter()
    if engine == "local":
        rows = _local(jobs, runner, workers)
    elif engine == "torchrun":
        rows = _torchrun(jobs, runner)
        if rows is None:
            return None
    else:
        rows = _ray(jobs, runner, address, cpus, gpus)
    wall = time.perf_counter() - t0
    ran = [r for r in rows if r.get("name") not in before]
    done = sum(r.get("status") == "done" for r in ran)
    summary = {"engine": engine, "jobs": len(jobs), "done": done, "failed": sum(r.get("status") != "done" for r in ran),
               "skipped": len(before), "wall_seconds": round(wall, 2),
               "jobs_per_hour": round(done / wall * 3600.0, 2) if wall > 0 and done else 0.0}
    result = {"rows": rows, "summary": summary}
    write_json(runner.state / "summary.json", result)
    atomic_write(runner.state / "summary.md", _markdown(rows, summary))
    return result
