"""The bundled models, shipped inside the package as package data (so that a plain ``pip install`` has them).

``prior/``: a small diffusers pipeline (trained by ``tools/train_prior.py``); ``event_teacher/``: the EventVGGT
RGB teacher (trained by ``tools/train_event_teacher.py``). Layer 0: imports nothing of vision3d_kd but errors.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RunError

__all__ = ["ASSETS_DIR", "asset_path", "default_prior_path", "is_bundled_prior", "default_event_teacher_path"]

ASSETS_DIR = Path(__file__).resolve().parent


def asset_path(name: str) -> Path:
    """The bundled asset ``name`` (a file or folder under vision3d_kd/assets); RunError if it is missing."""
    path = ASSETS_DIR / name
    if not path.exists():
        raise RunError(f"{path}: bundled asset {name!r} is missing (reinstall vision3d_kd, or pass a path)")
    return path


def default_prior_path(path: Path | None = None) -> Path:
    """``path`` (e.g. --prior) when given, else the bundled prior (vision3d_kd/assets/prior)."""
    return Path(path) if path is not None else asset_path("prior")


def is_bundled_prior(path: str | Path | None) -> bool:
    """Whether `path` (None: the default) is the bundled prior's directory."""
    return path is None or Path(path).resolve() == asset_path("prior").resolve()


def default_event_teacher_path(path: Path | None = None) -> Path:
    """``path`` (e.g. --teacher) when given, else the bundled EventVGGT teacher (vision3d_kd/assets/event_teacher)."""
    return Path(path) if path is not None else asset_path("event_teacher")
