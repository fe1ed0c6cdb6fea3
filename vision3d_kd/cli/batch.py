"""`v3kd batch JOBS.yaml [--engine local|torchrun|ray]`: many independent jobs on engines people run."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "batch_command"]


def batch_command(
    jobs: Path = typer.Argument(..., help="Jobs file (YAML: `jobs:` a list of v3kd command lines — generate, fit, "
                                "convert, export, image-to-3d — each with its own --out; see README)."),
    engine: str = typer.Option("local", "--engine", help="local (a pool of processes here), torchrun (static "
                               "shares across the ranks of `torchrun ... -m vision3d_kd.cli.main batch`) or ray."),
    state: Path = typer.Option(None, "--state", help="Folder for job states, logs and the summary (default: "
                               "JOBS.batch beside the jobs file)."),
    workers: int = typer.Option(2, "--workers", help="local: jobs at once."),
    threads: int = typer.Option(1, "--threads", help="CPU threads per job (OMP/MKL/torch)."),
    address: str = typer.Option(None, "--address", help="ray: the cluster's address (default: start a local Ray)."),
    cpus: float = typer.Option(1.0, "--cpus", help="ray: CPUs per job."),
    gpus: float = typer.Option(0.0, "--gpus", help="ray: GPUs per job."),
    attempts: int = typer.Option(2, "--attempts", help="Tries per job (a failed job is retried once by default)."),
) -> None:
    """Run every unfinished job of JOBS.yaml (finished ones are skipped), each in its own process, retrying a
    failed one; write STATE/summary.json and summary.md and print the table."""
    from ..batch.engines import run_batch

    result = run_batch(jobs, engine, state, workers, threads, address, cpus, gpus, attempts)
    if result is None:
        return
    for r in result["rows"]:
        extra = " (skipped: finished before)" if r.get("skipped") else (f": {r['error']}" if r.get("error") else "")
        print(f"{r.get('name')}: {r.get('status')} after {r.get('attempts', 0)} attempt(s), "
              f"{r.get('seconds', 0):.0f} s{extra}")
    s = result["summary"]
    print(f"{s['done']} done, {s['failed']} failed, {s['skipped']} skipped in {s['wall_seconds']:.0f} s "
          f"({s['jobs_per_hour']} jobs/hour, engine {s['engine']})")


def register(app: typer.Typer) -> None:
    app.command("batch")(batch_command)
