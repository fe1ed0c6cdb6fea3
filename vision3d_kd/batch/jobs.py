"""A batch of jobs (`v3kd batch JOBS.yaml`): each job one `v3kd` command line that writes its own output.

JOBS.yaml:

    defaults:                       # optional: options appended to every job of a command
      generate: [--steps, "300"]
    jobs:
      - command: generate "a red mug" --out runs/red-mug     # a string (split like a shell) ...
      - name: lego-hashgrid                                  # optional; default: the output's name
        command: [fit, data/lego, --field, hashgrid, --out, runs/lego]   # ... or a list
        env: {OMP_NUM_THREADS: "1"}                          # optional extra environment

Relative paths in commands are relative to the folder holding JOBS.yaml (jobs run there). A job must name
its output with `--out`/`-o` (export: the output file); names and outputs are unique."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Job", "COMMANDS", "RESUMABLE", "read_jobs", "parse_jobs"]

COMMANDS = ("generate", "fit", "convert", "export", "image-to-3d")
RESUMABLE = ("generate", "fit", "convert")  # take --resume: a retry continues from their checkpoint
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Job:
    """One command line (`args` after `v3kd`), its unique name, its output path and extra environment."""

    name: str
    args: list[str]
    out: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return self.args[0]


def _out_of(args: list[str], where: str) -> str:
    for i, a in enumerate(args):
        if a in ("--out", "-o") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--out="):
            return a[len("--out="):]
    raise ConfigError(f"{where}: the command has no --out (every job writes its own output)")


def _args(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            args = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot split the command ({exc})") from None
    elif isinstance(value, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
        args = [str(a) for a in value]
    else:
        raise ConfigError(f"{where}: command must be a string or a list of strings")
    if args and args[0] == "v3kd":
        args = args[1:]
    if not args or args[0] not in COMMANDS:
        got = args[0] if args else "nothing"
        raise ConfigError(f"{where}: command must start with one of {', '.join(COMMANDS)}, got {got!r}")
    return args


def parse_jobs(doc: Any, source: str) -> list[Job]:
    """Jobs of a parsed JOBS.yaml document; one-line ConfigError naming `source` and the job for anything
    wrong (unknown keys, commands or names, no --out, duplicates)."""
    if not isinstance(doc, dict) or set(doc) - {"jobs", "defaults"} or not isinstance(doc.get("jobs"), list):
        raise ConfigError(f"{source}: must be a mapping with a `jobs` list (and optional `defaults`)")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - set(COMMANDS):
        raise ConfigError(f"{source}: defaults must map commands ({', '.join(COMMANDS)}) to option lists")
    extra = {k: _args([k, *v] if isinstance(v, list) else f"{k} {v}", f"{source}: defaults.{k}")[1:]
             for k, v in defaults.items()}
    if not doc["jobs"]:
        raise ConfigError(f"{source}: the jobs list is empty")
    jobs, names, outs = [], set(), set()
    for i, entry in enumerate(doc["jobs"]):
        where = f"{source}: job {i + 1}"
        if isinstance(entry, (str, list)):
            entry = {"command": entry}
        if not isinstance(entry, dict) or "command" not in entry or set(entry) - {"command", "name", "env"}:
            raise ConfigError(f"{where}: must be a command or a mapping with command (and optional name, env)")
        args = _args(entry["command"], where)
        args = args + extra.get(args[0], [])
        out = _out_of(args, where)
        name = str(entry.get("name") or Path(out).name)
        if not _NAME.match(name):
            raise ConfigError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (≤ 100)")
        env = entry.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
            raise ConfigError(f"{where}: env must map variable names to values")
        norm = str(Path(out))
        if name in names or norm in outs:
            raise ConfigError(f"{where}: name {name!r} or output {out!r} is used by another job")
        names.add(name)
        outs.add(norm)
        jobs.append(Job(name, args, out, {k: str(v) for k, v in env.items()}))
    return jobs


def read_jobs(path: Path) -> list[Job]:
    """The jobs of JOBS.yaml at `path` (one-line ConfigError for a missing or malformed file)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such jobs file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    return parse_jobs(doc, str(path))
