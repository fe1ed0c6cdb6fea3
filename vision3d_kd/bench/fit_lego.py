"""`v3kd bench fit-lego`: every field family fitted on the lego scene under one wall-clock budget,
each in its own process (so peak memory is per field); test-split PSNR/SSIM side by side."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DataError
from .report import repo_path

__all__ = ["run", "FIELDS_BENCHED", "default_lego_path"]

FIELDS_BENCHED = ["hashgrid", "tensorf-vm", "tensorf-cp", "grid", "mlp", "splats"]


def default_lego_path() -> Path:
    """`../shared/data/nerf_synthetic_lego_200` next to the repository (or the working directory)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        p = base.parent / "shared" / "data" / "nerf_synthetic_lego_200"
        if p.is_dir():
            return p
    return Path.cwd().parent / "shared" / "data" / "nerf_synthetic_lego_200"


def _finished_with_budget(out: Path, budget: float) -> bool:
    """Whether `out` holds a finished fit (metrics.json) whose wall-clock budget was `budget` seconds."""
    cfg = out / "config.json"
    if not ((out / "metrics.json").is_file() and cfg.is_file()):
        return False
    train = json.loads(cfg.read_text()).get("fit", {}).get("train", {})
    return float(train.get("max_seconds", -1)) == float(budget)


def _row(name: str, m: dict[str, Any], out: Path) -> dict[str, Any]:
    return {"field": name, "psnr_test": round(m["psnr_test"], 3), "ssim_test": round(m["ssim_test"], 4),
            "seconds": m["seconds"], "steps": m["steps"], "params": m["params"],
            "peak_memory_mb": round(m["peak_memory_mb"], 1), "run": repo_path(out),
            **({"gaussians": m["gaussians"]} if "gaussians" in m else {})}


def run(quick: bool = False, data: Path | None = None, budget_s: float | None = None,
        fields: list[str] | None = None, keep_dir: Path | None = None) -> dict[str, Any]:
    """Fit each field with the same training budget (default 780 s; quick: 45 s at half resolution); a field
    whose run in `keep_dir` finished with the same budget is reused (so an interrupted bench resumes)."""
    data = Path(data) if data else default_lego_path()
    if not (data / "transforms_train.json").is_file():
        raise DataError(f"{data}: lego dataset not found (pass --data)")
    budget = budget_s or (45.0 if quick else 780.0)
    rows, summary = [], {}
    base = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="v3kd-bench-"))
    for name in fields or FIELDS_BENCHED:
        out = base / name
        if not _finished_with_budget(out, budget):
            cmd = [sys.executable, "-m", "vision3d_kd.cli.main", "fit", str(data), "--field", name, "--out",
                   str(out), "--max-seconds", str(budget), "--no-progress", "--device", "cpu"]
            if quick:
                cmd += ["--downscale", "2"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"field": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
                continue
        m = json.loads((out / "metrics.json").read_text())
        rows.append(_row(name, m, out))
        summary[f"psnr_{name.replace('-', '_')}"] = round(m["psnr_test"], 3)
    summary["budget_s"] = budget
    return {"rows": rows, "summary": summary}
