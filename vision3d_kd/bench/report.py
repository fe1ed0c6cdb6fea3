"""Write benchmark results: bench/results/NAME.json ({rows, summary, command, machine}) and NAME.md."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import atomic_write, write_json

__all__ = ["machine_info", "write_results", "markdown_table", "repo_path", "bench_command", "mean_std"]


REPO = Path(__file__).resolve().parents[2]


def repo_path(path: Path | str) -> str:
    """`path` relative to the repository when inside it or beside it (`../shared/data/...`), else as given:
    what bench JSON records, so results do not name one machine's folders."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        return str(path)
    for q in (Path(os.path.abspath(p)), p.resolve()):  # as written first: a symlinked ../shared stays ../shared
        for base, prefix in ((REPO, ""), (REPO.parent, "../")):
            if q.is_relative_to(base):
                return prefix + str(q.relative_to(base))
    return str(path)


def mean_std(values: list[float], digits: int | None = None) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of `values`, rounded to `digits` if given."""
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return (round(mean, digits), round(std, digits)) if digits is not None else (mean, std)


def bench_command(argv: list[str], name: str) -> str:
    """The command line that ran a benchmark, its absolute paths made `repo_path`s."""
    if len(argv) < 2:
        return f"v3kd bench {name}"
    return "v3kd " + " ".join(repo_path(a) if a.startswith("/") else a for a in argv[1:])


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts) as a GitHub Markdown table; columns in first-seen order."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_results(name: str, result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write NAME.json and NAME.md under out_dir; returns both paths."""
    payload = {"rows": result["rows"], "summary": result["summary"],
               "command": bench_command(sys.argv, name),
               "machine": machine_info()}
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / f"{name}.json", out_dir / f"{name}.md"
    write_json(jpath, payload)
    summary = "\n".join(f"- `{k}`: {_fmt(v)}" for k, v in result["summary"].items())
    md = (f"# bench {name}\n\nCommand: `{payload['command']}`  \nMachine: {payload['machine'].get('cpu', '?')}, "
          f"{payload['machine']['torch_threads']} torch threads, torch {payload['machine']['torch']}\n\n"
          f"## Summary\n\n{summary}\n\n## Rows\n\n{markdown_table(result['rows'])}\n")
    atomic_write(mpath, md, make_parents=True)
    return jpath, mpath
