"""`v3kd batch`: the jobs file's one-line errors, the local engine (a pool of job processes) giving the runs a
sequential batch gives, skipping finished jobs, retrying a killed or failing job once, and the torchrun
engine's static shares (two gloo ranks). The Ray engine is tested where Ray is installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from vision3d_kd.batch.engines import run_batch
from vision3d_kd.batch.jobs import parse_jobs
from vision3d_kd.checkpoint import load_tensors
from vision3d_kd.errors import ConfigError

from .conftest import TORCHRUN, one_line_error, run_cli

FAST = ["--steps", "2", "--no-mesh", "--no-video", "--quiet", "--set", "generate.size=32", "--set",
        "generate.prune_floaters=false"]


def _jobs_file(folder: Path, prior: Path, n: int = 4, steps: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"defaults": {"generate": ["--prior", str(prior), *FAST]},
           "jobs": [{"name": f"job{i}", "command": ["generate", "a red mug", "--seed", str(i), "--out", f"runs/r{i}"]}
                    for i in range(n)]}
    if steps != 2:
        doc["defaults"]["generate"][3] = str(steps)
    (folder / "jobs.yaml").write_text(yaml.safe_dump(doc))
    return folder / "jobs.yaml"


def _weights(folder: Path, n: int) -> list[dict]:
    return [load_tensors(folder / "runs" / f"r{i}" / "weights.safetensors") for i in range(n)]


@pytest.mark.parametrize("doc,what", [
    ({"jobs": []}, "empty"),
    ({"jobs": ["fly --out x"]}, "must start with"),
    ({"jobs": ["generate 'a mug'"]}, "no --out"),
    ({"jobs": ["generate a --out x", "generate b --out x"]}, "used by another job"),
    ({"jobs": [{"command": "fit d --out x", "when": 1}]}, "mapping with command"),
    ({"jobs": ["generate 'a mug --out x"]}, "cannot split"),
    ({"jobs": [{"command": "fit d --out x", "name": "../up"}]}, "name"),
    ({"jobz": []}, "jobs"),
    ({"jobs": ["fit d --out x"], "defaults": {"fly": []}}, "defaults"),
])
def test_bad_jobs_files_are_one_line_errors(doc, what, tmp_path, capsys):
    with pytest.raises(ConfigError, match=what):
        parse_jobs(doc, "jobs.yaml")
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump(doc))
    assert run_cli(["batch", str(tmp_path / "jobs.yaml")]) == 2
    one_line_error(capsys, "jobs.yaml")
    (tmp_path / "bad.yaml").write_text("jobs: [unclosed\n")
    assert run_cli(["batch", str(tmp_path / "bad.yaml")]) == 2
    one_line_error(capsys, "bad.yaml")


@pytest.fixture(scope="module")
def sequential(sd_pipe, tmp_path_factory) -> list[dict]:
    """The four jobs' weights when their commands run one after another in this process (1 thread, as a job)."""
    import torch

    folder = tmp_path_factory.mktemp("sequential")
    doc = yaml.safe_load(_jobs_file(folder, sd_pipe).read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, job in enumerate(doc["jobs"]):
            args = [*job["command"], *doc["defaults"]["generate"]]
            args[args.index("--out") + 1] = str(folder / "runs" / f"r{i}")
            assert run_cli(args) == 0
    finally:
        torch.set_num_threads(threads)
    return _weights(folder, 4)


def _same(runs: list[dict], sequential: list[dict]) -> bool:
    return all(a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a) for a, b in zip(runs, sequential,
                                                                                                 strict=True))


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_local_engine_gives_the_sequential_runs_and_skips_finished_jobs(sd_pipe, sequential, tmp_path):
    jobs = _jobs_file(tmp_path, sd_pipe)
    result = run_batch(jobs, "local", workers=2)
    assert result["summary"]["done"] == 4 and result["summary"]["failed"] == 0
    assert _same(_weights(tmp_path, 4), sequential)
    shutil.rmtree(tmp_path / "runs" / "r2")  # a lost output is made again; the others are skipped
    again = run_batch(jobs, "local", workers=2)
    assert again["summary"] == {**again["summary"], "done": 1, "skipped": 3, "failed": 0}
    assert json.loads((tmp_path / "jobs.batch" / "summary.json").read_text())["summary"]["skipped"] == 3


def test_a_killed_job_is_retried_and_resumes_and_a_failing_one_is_reported(sd_pipe, tmp_path):
    jobs = _jobs_file(tmp_path, sd_pipe, n=1, steps=60)
    doc = yaml.safe_load(jobs.read_text())
    doc["jobs"][0]["command"] += ["--set", "generate.checkpoint_every=5"]
    doc["jobs"].append({"name": "broken", "command": "fit nowhere --out runs/broken"})
    jobs.write_text(yaml.safe_dump(doc))
    state = tmp_path / "jobs.batch" / "jobs" / "job0.json"
    killed = {}

    def kill_when_checkpointed() -> None:  # the worker dies (as under the OOM killer) once it has a checkpoint
        deadline = time.time() + 120
        while time.time() < deadline:
            if state.is_file() and (tmp_path / "runs" / "r0" / "train_state.safetensors").is_file():
                rec = json.loads(state.read_text())
                if rec.get("status") == "running" and rec.get("attempts") == 1:
                    os.kill(rec["pid"], signal.SIGKILL)
                    killed["pid"] = rec["pid"]
                    return
            time.sleep(0.05)

    t = threading.Thread(target=kill_when_checkpointed)
    t.start()
    result = run_batch(jobs, "local", workers=2)
    t.join()
    rows = {r["name"]: r for r in result["rows"]}
    assert killed and rows["job0"]["status"] == "done" and rows["job0"]["attempts"] == 2
    log = (tmp_path / "jobs.batch" / "logs" / "job0.log").read_text()
    assert "--resume" in log.split("=== attempt 2")[1].splitlines()[0]
    assert json.loads((tmp_path / "runs" / "r0" / "metrics.json").read_text())["steps"] == 60
    assert rows["broken"]["status"] == "failed" and rows["broken"]["attempts"] == 2 and "nowhere" in rows["broken"][
        "error"]
    assert result["summary"]["done"] == 1 and result["summary"]["failed"] == 1


def test_torchrun_engine_shares_jobs_over_two_ranks(sd_pipe, sequential, tmp_path):
    jobs = _jobs_file(tmp_path, sd_pipe)
    cmd = [*TORCHRUN, "batch", str(jobs), "--engine", "torchrun"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "jobs.batch" / "summary.json").read_text())
    workers = {r["name"]: r["worker"] for r in summary["rows"]}
    assert summary["summary"]["done"] == 4 and workers == {"job0": "rank0", "job1": "rank1", "job2": "rank0",
                                                           "job3": "rank1"}
    assert _same(_weights(tmp_path, 4), sequential)


def test_torchrun_engine_outside_torchrun_says_how_to_start_it(tmp_path, capsys):
    (tmp_path / "jobs.yaml").write_text("jobs: ['fit d --out x']\n")
    assert run_cli(["batch", str(tmp_path / "jobs.yaml"), "--engine", "torchrun"]) == 2
    one_line_error(capsys, "torchrun")


def test_ray_engine_gives_the_sequential_runs(sd_pipe, sequential, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install ray)")
    result = run_batch(_jobs_file(tmp_path, sd_pipe), "ray", cpus=1)
    assert result["summary"]["done"] == 4 and all(r["worker"].startswith("ray:") for r in result["rows"])
    assert _same(_weights(tmp_path, 4), sequential)
