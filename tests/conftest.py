"""Shared fixtures: paths to ../shared/data (skipped with a reason when absent) and small scenes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
LEGO = SHARED_DATA / "nerf_synthetic_lego_200"
BAD_INPUTS = SHARED_DATA / "bad_inputs"


def need_shared(path: Path) -> Path:
    """Skip the calling test when shared data is not beside the repository (users' fresh clones)."""
    if not path.exists():
        pytest.skip(f"{path} not present (shared data is only beside the repo in CI/dev)")
    return path


def run_cli(args: list[str]) -> int:
    """Run `v3kd ARGS` in-process; its exit status (0 when it returns normally)."""
    from vision3d_kd.cli.main import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def one_line_error(capsys, name: str) -> str:
    """The captured stderr, asserted to be one `error: ...` line (no traceback) naming `name`."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert name in err, err
    return err


@pytest.fixture(scope="session")
def sphere_scene(tmp_path_factory) -> Path:
    """A procedural coloured-sphere scene (Blender layout, 40x40, 30 train / 6 test views)."""
    from vision3d_kd.data.procedural import write_scene

    out = tmp_path_factory.mktemp("scenes") / "sphere"
    return write_scene("sphere", out, n_train=30, n_test=6, size=40, seed=0)
