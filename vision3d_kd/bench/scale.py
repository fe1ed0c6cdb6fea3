"""`v3kd bench scale`: what data parallelism and job batches buy on this machine, and what they cost in
communication, so the cost on N GPUs can be estimated.

- DDP gradient check: two gloo ranks' summed gradients against one process's on the same global batch of rays
  (max absolute difference).
- Data-parallel fit: a hash grid on a procedural scene (`data scene composite`), the same global batch (fixed rays
  per step) in 1 process × 1 thread, 1 process × 2 threads and 2 torchrun ranks × 1 thread: held-out PSNR,
  training steps per second, speed-up and parallel efficiency of the 2 ranks against 1 process × 1 thread.
- Communication: the gradient buffer every step all-reduces (every trained tensor, float32) and what a ring
  all-reduce sends per rank, 2 (N − 1) / N of it.
- Batches: the same small generate jobs under the local engine (2 workers) and under Ray (1 CPU per job):
  jobs per hour of wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ..checkpoint import load_tensors
from ..parallel import leave_distributed

__all__ = ["run", "ddp_gradient_difference"]


def _task(data: Path, rank: int, world: int):
    from ..data import load_dataset
    from ..parallel import DistEnv
    from ..train.config import load_fit_config
    from ..train.driver import make_generator
    from ..train.fit import FitTask

    cfg = load_fit_config("hashgrid", None)
    task = FitTask.build(cfg, load_dataset(data, "train"), None, data / "unused", False, make_generator(0),
                         {"fit": cfg.to_dict()}, torch.device("cpu"), DistEnv(rank, world))
    task.grid.update(task.field.density, task.density_threshold, warmup=True, generator=make_generator(1))
    return task


def _gradients(data: Path, rank: int, world: int) -> list[torch.Tensor]:
    task = _task(data, rank, world)
    g = torch.Generator().manual_seed(7)
    idx, bg = torch.randint(0, task.rgb.shape[0], (4096,), generator=g), torch.rand(4096, 3, generator=g)
    loss, _, n = task.batch_loss(idx, bg, 0.0, jitter=False)
    loss.backward()
    task.sync_gradients(n)
    return [p.grad for p in task.field.parameters()]


def _rank(rank: int, world: int, data: str, rendezvous: str, out: str) -> None:
    import torch.distributed as tdist

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    grads = _gradients(Path(data), rank, world)
    if rank == 0:
        torch.save(grads, out)
    leave_distributed()


def ddp_gradient_difference(data: Path, work: Path) -> float:
    """Max |summed gradient of 2 gloo ranks − one process's gradient| on the same 4096-ray batch (hash grid)."""
    import torch.multiprocessing as mp

    ref = _gradients(Path(data), 0, 1)
    out = Path(work) / "grads.pt"
    mp.spawn(_rank, args=(2, str(data), f"file://{Path(work) / 'rdv'}", str(out)), nprocs=2)
    got = torch.load(out, weights_only=True)
    return max(float((a - b).abs().max()) for a, b in zip(got, ref, strict=True))


def _fit(data: Path, out: Path, steps: int, ranks: int, threads: int) -> dict[str, Any]:
    args = ["fit", str(data), "--field", "hashgrid", "--steps", str(steps), "--out", str(out), "--no-progress",
            "--set", "train.max_seconds=0", "--set", "train.batch_rays=4096", "--set", "train.target_samples=0"]
    launcher = [sys.executable, "-m", "vision3d_kd.cli.main"] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--standalone",
        "-m", "vision3d_kd.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"fit with {ranks} rank(s) failed: {done.stderr.strip().splitlines()[-1:]}")
    m = json.loads((out / "metrics.json").read_text())
    params = sum(t.numel() for t in load_tensors(out / "weights.safetensors").values() if t.is_floating_point())
    return {"psnr": m["psnr_test"], "steps": m["steps"], "train_seconds": m["seconds"],
            "wall_seconds": time.perf_counter() - t0, "params": params}


def _batch(work: Path, engine: str, jobs: int, steps: int) -> float:
    from ..batch.engines import run_batch

    folder = work / f"batch-{engine}"
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"defaults": {"generate": ["--steps", str(steps), "--no-video", "--quiet", "--set", "generate.size=32"]},
           "jobs": [f"generate 'a red mug' --seed {i} --out runs/r{i}" for i in range(jobs)]}
    (folder / "jobs.yaml").write_text(yaml.safe_dump(doc))
    result = run_batch(folder / "jobs.yaml", engine, workers=2, cpus=1.0)
    if result["summary"]["done"] != jobs:
        raise RuntimeError(f"batch on {engine}: {result['summary']}")
    return float(result["summary"]["jobs_per_hour"])


def run(quick: bool = False, steps: int | None = None, jobs: int = 4, job_steps: int | None = None,
        work: Path | None = None, progress=print) -> dict[str, Any]:
    """Every measurement above (quick: 60 fit steps at 40 px, 2 jobs of 10 steps)."""
    from ..data.procedural import write_scene

    steps = steps or (60 if quick else 600)
    job_steps = job_steps or (10 if quick else 100)
    jobs = 2 if quick else jobs
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        data = write_scene("composite", work / "composite", n_train=40, n_test=8, size=40 if quick else 100, seed=0)
        diff = ddp_gradient_difference(data, work)
        progress(f"DDP gradient check: max |2 ranks − 1 process| = {diff:.2e}")
        fits = {}
        for name, ranks, threads in (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2),
                                     ("2 ranks x 1 thread", 2, 1)):
            fits[name] = _fit(data, work / name.replace(" ", "_"), steps, ranks, threads)
            rate = fits[name]["steps"] / fits[name]["train_seconds"]
            progress(f"fit, {name}: {fits[name]['psnr']:.2f} dB, {rate:.2f} steps/s")
        try:
            import ray  # noqa: F401

            ray_rate = _batch(work, "ray", jobs, job_steps)
        except ImportError:
            ray_rate = float("nan")
        local_rate = _batch(work, "local", jobs, job_steps)
    base = fits["1 process x 1 thread"]
    rows = []
    for name, f in fits.items():
        rate = f["steps"] / f["train_seconds"]
        speedup = rate / (base["steps"] / base["train_seconds"])
        rows.append({"setting": name, "psnr_test": round(f["psnr"], 3), "steps_per_s": round(rate, 3),
                     "speedup_vs_1x1": round(speedup, 3), "train_seconds": round(f["train_seconds"], 1)})
    two = rows[2]
    mb = base["params"] * 4 / 1e6
    summary = {"ddp_grad_max_abs_diff": diff, "psnr_1rank": rows[0]["psnr_test"], "psnr_2rank": two["psnr_test"],
               "speedup_2rank": two["speedup_vs_1x1"], "parallel_efficiency_2rank": round(two["speedup_vs_1x1"] / 2, 3),
               "allreduce_mb_per_step": round(mb, 2), "ring_mb_sent_per_rank_2": round(mb, 2),
               "ring_mb_sent_per_rank_8": round(mb * 2 * 7 / 8, 2), "batch_jobs_per_hour_local": local_rate,
               "batch_jobs_per_hour_ray": ray_rate, "fit_steps": steps, "jobs": jobs, "job_steps": job_steps}
    return {"rows": rows, "summary": summary}
