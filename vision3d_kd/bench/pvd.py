"""`v3kd bench pvd`: Progressive Volume Distillation against training from scratch on the lego scene.

1. Teachers = from-scratch runs: `v3kd fit` of every family involved, with weight snapshots every
   `budget/18` s; the snapshots give each family's from-scratch learning curve (test PSNR vs seconds).
2. Each pair T->S runs `v3kd convert` (data-free) with snapshots; its curve's times include the
   preparation (e.g. rendering the teacher's views).
3. Target PSNR = min(teacher test PSNR - 0.5, the student family's own from-scratch final PSNR): a
   student family that cannot reach teacher - 0.5 dB from scratch within the budget is timed to
   what it does reach. Speed-up = scratch seconds to target / conversion seconds to target (None
   when the conversion does not reach the target in its budget); speedup_to_convert_psnr = scratch
   seconds to the PSNR the conversion ended at / the conversion's seconds.
4. PVD vs PVD-AL (`--active`) at the same budget on hashgrid->mlp.
Every process runs alone (2-core machine); curves use the dataset's test split.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import DataError, RunError
from .fit_lego import default_lego_path

__all__ = ["run", "PAIRS", "time_to_reach", "psnr_at", "psnr_curve", "cli"]

PAIRS = [("hashgrid", "mlp"), ("hashgrid", "tensorf-vm"), ("tensorf-vm", "hashgrid"), ("mlp", "hashgrid"),
         ("grid", "hashgrid"), ("hashgrid", "splats"), ("splats", "hashgrid")]
AL_PAIR = ("hashgrid", "mlp")


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """First time (s) a (seconds, PSNR) curve reaches `target`, linearly interpolated; None if never."""
    prev = None
    for t, p in curve:
        if p >= target:
            if prev is None or prev[1] >= target:
                return t
            (t0, p0) = prev
            return t0 + (t - t0) * (target - p0) / (p - p0)
        prev = (t, p)
    return None


def psnr_at(curve: list[tuple[float, float]], seconds: float) -> float | None:
    """PSNR of a curve at `seconds` (linear interpolation; None before its first point; last value after)."""
    if not curve or seconds < curve[0][0]:
        return None
    for (t0, p0), (t1, p1) in zip(curve, curve[1:], strict=False):
        if t0 <= seconds <= t1:
            return p0 + (p1 - p0) * (seconds - t0) / max(t1 - t0, 1e-9)
    return curve[-1][1]


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "vision3d_kd.cli.main", *args, "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunError(f"{' '.join(args[:2])}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")


def psnr_curve(run: Path, data: Path, offset: float = 0.0) -> list[tuple[float, float]]:
    """(seconds + offset, test PSNR) for every snapshot of `run` and its final state (cached in curve.json)."""
    cache = run / "curve.json"
    if cache.is_file():
        return [tuple(p) for p in json.loads(cache.read_text())]
    from ..data import held_out_split, load_dataset
    from ..evaluate import evaluate_field
    from ..runs import load_run, render_settings_from

    test = load_dataset(data, held_out_split(data) or "test")
    points = []
    for snap in sorted((run / "snapshots").glob("*s")):
        model, grid, cfg = load_run(snap)
        ev = evaluate_field(model, test, grid, render_settings_from(cfg))
        points.append((float(snap.name[:-1]) + offset, ev["psnr"]))
    m = json.loads((run / "metrics.json").read_text())
    points.append((m["seconds"] + offset, m["psnr_test"]))
    cache.write_text(json.dumps(points))
    return points


def run(quick: bool = False, data: Path | None = None, budget_s: float | None = None,
        convert_budget_s: float | None = None, keep_dir: Path | None = None,
        pairs: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Fit teachers (budget, default 540 s; quick 40 s at half resolution), convert every pair (default
    240 s; quick 30 s), compare with the from-scratch curves; returns {rows, summary}."""
    import tempfile

    data = Path(data) if data else default_lego_path()
    if not (data / "transforms_train.json").is_file():
        raise DataError(f"{data}: lego dataset not found (pass --data)")
    budget = budget_s or (40.0 if quick else 540.0)
    conv_budget = convert_budget_s or (30.0 if quick else 240.0)
    base = Path(keep_dir) if keep_dir else Path(tempfile.mkdtemp(prefix="v3kd-pvd-"))
    pairs = pairs or PAIRS
    extra = ["--downscale", "2"] if quick else []
    families = sorted({f for p in pairs for f in p} | set(AL_PAIR))
    teachers: dict[str, dict[str, Any]] = {}
    for fam in families:
        out = base / f"teacher-{fam}"
        if not (out / "metrics.json").is_file():
            cli("fit", str(data), "--field", fam, "--out", str(out), "--max-seconds", str(budget),
                 "--set", f"train.snapshot_every_seconds={budget / 18}", *extra)
        teachers[fam] = {"run": out, "psnr": json.loads((out / "metrics.json").read_text())["psnr_test"],
                         "curve": psnr_curve(out, data)}
    rows, speedups = [], {}
    jobs = [(t, s, False) for t, s in pairs] + [(*AL_PAIR, True)]
    results, failed = {}, {}
    for t, s, active in jobs:
        out = base / f"convert-{t}-{s}{'-al' if active else ''}"
        if not (out / "metrics.json").is_file():
            args = ["convert", str(teachers[t]["run"]), "--to", s, "--out", str(out), "--max-seconds",
                    str(conv_budget), "--set", f"train.snapshot_every_seconds={conv_budget / 6}"]
            try:
                cli(*args, *(["--active"] if active else []))
            except RunError as exc:  # report the pair, keep benchmarking the others
                failed[(t, s, active)] = str(exc)
                continue
        m = json.loads((out / "metrics.json").read_text())
        results[(t, s, active)] = (m, psnr_curve(out, data, offset=m.get("prepare_seconds", 0.0)))
    for t, s in pairs:
        if (t, s, False) in failed:
            rows.append({"pair": f"{t}->{s}", "error": failed[(t, s, False)]})
            speedups[(t, s)] = None
            continue
        m, conv = results[(t, s, False)]
        scratch = teachers[s]["curve"]
        target = min(teachers[t]["psnr"] - 0.5, scratch[-1][1])
        t_scratch, t_conv = time_to_reach(scratch, target), time_to_reach(conv, target)
        speed = round(t_scratch / t_conv, 2) if t_scratch and t_conv else None
        conv_end = conv[-1][0]
        at_equal = psnr_at(scratch, conv_end)
        # how long scratch training needs for what the conversion reached in its budget
        t_same = time_to_reach(scratch, conv[-1][1])
        same = round(t_same / conv_end, 2) if t_same else None
        rows.append({"pair": f"{t}->{s}", "teacher_psnr": round(teachers[t]["psnr"], 2),
                     "scratch_final_psnr": round(scratch[-1][1], 2), "target_psnr": round(target, 2),
                     "scratch_s": round(t_scratch, 1) if t_scratch else None,
                     "convert_s": round(t_conv, 1) if t_conv else None, "speedup": speed,
                     "convert_psnr": round(m["psnr_test"], 2), "convert_total_s": round(conv_end, 1),
                     "scratch_psnr_same_time": round(at_equal, 2) if at_equal is not None else None,
                     "speedup_to_convert_psnr": same,
                     "psnr_vs_teacher": round(m["psnr_vs_teacher"], 2)})
        speedups[(t, s)] = speed
    gain = None
    if (*AL_PAIR, True) in results and (*AL_PAIR, False) in results:
        m_al, _ = results[(*AL_PAIR, True)]
        m_pvd, _ = results[(*AL_PAIR, False)]
        gain = round(m_al["psnr_test"] - m_pvd["psnr_test"], 2)
        rows.append({"pair": f"{AL_PAIR[0]}->{AL_PAIR[1]} PVD-AL", "convert_psnr": round(m_al["psnr_test"], 2),
                     "convert_total_s": round(m_al["seconds"] + m_al.get("prepare_seconds", 0.0), 1),
                     "psnr_vs_teacher": round(m_al["psnr_vs_teacher"], 2), "al_gain_db": gain})
    others = [v for k, v in speedups.items() if k != AL_PAIR]
    summary = {"speedup_hashgrid_to_mlp": speedups.get(AL_PAIR),
               "min_speedup_other_pairs": min((v or 0.0) for v in others) if others else None,
               "al_gain_db": gain, "teacher_budget_s": budget, "convert_budget_s": conv_budget}
    return {"rows": rows, "summary": summary}
