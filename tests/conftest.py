"""Shared fixtures: paths to ../shared/data (skipped with a reason when absent) and small scenes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from .gsv3d_tiny import tiny  # noqa: F401 (the GSV3D tests' shared fixture)

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
LEGO = SHARED_DATA / "nerf_synthetic_lego_200"
BAD_INPUTS = SHARED_DATA / "bad_inputs"


@pytest.fixture(scope="module")
def ext():
    """The built C++ extension of the fused kernels; skips (with the reason) where it cannot be built."""
    import warnings

    from vision3d_kd.kernels import build, dispatch

    if build.extensions_disabled():
        pytest.skip("fused kernels disabled by V3KD_NO_EXT=1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = dispatch.get_extension("hash")
    if module is None:
        pytest.skip(f"C++ extension failed to build: {[str(w.message) for w in caught]}")
    return module


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


# a small hash grid and its sampling: fast on 2 cores, enough for the 40 px sphere
SMALL_HASHGRID = ["field.n_levels=8", "field.log2_table_size=14", "field.max_resolution=128", "field.base_resolution=8",
                  "train.batch_rays=1024", "train.target_samples=0", "train.step_size=0.02", "train.occ_resolution=32"]
# two ranks on this host under torchrun; --standalone picks a free rendezvous port (tests may run side by side)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
            "vision3d_kd.cli.main"]


@pytest.fixture(scope="session")
def sphere_hashgrid_run(sphere_scene, tmp_path_factory) -> Path:
    """A small hash grid fitted by `v3kd fit` on the sphere scene, 300 steps (about 29 dB on its held-out views):
    test_fit checks it, the conversion tests take it as their teacher."""
    run = tmp_path_factory.mktemp("fitted") / "hashgrid"
    small = ["field.log2_table_size=14", "field.n_levels=8", "field.max_resolution=128", "train.batch_rays=1024",
             "train.target_samples=0", "train.occ_resolution=32", "train.step_size=0.03"]
    assert run_cli(["fit", str(sphere_scene), "--field", "hashgrid", "--out", str(run), "--steps", "300",
                    "--no-progress", "--max-seconds", "0", *(a for kv in small for a in ("--set", kv))]) == 0
    return run


COLOR = (0.2, 0.6, 0.3)
RENDER = {"step_size": 0.01, "radius": 4.0, "fov_y_deg": 40.0, "width": 64, "height": 64,
          "elevation_range_deg": [-30.0, 80.0]}


def analytic_run(path: Path, name, res: int = 64, empty: bool = False) -> Path:
    """A grid-field run of procedural scene `name` (or of any object with `sdf(x)` and `aabb`): sigma ~250
    inside, ~0 outside (4-voxel ramp), colour COLOR (meshes and viewers can be tested without fitting)."""
    from vision3d_kd.data.sdf import scene_sdf
    from vision3d_kd.fields.grid import VoxelGridField
    from vision3d_kd.runs import save_field

    scene = scene_sdf(name) if isinstance(name, str) else name
    lo, hi = torch.tensor(scene.aabb[0]), torch.tensor(scene.aabb[1])
    field = VoxelGridField(aabb=[list(scene.aabb[0]), list(scene.aabb[1])], resolution=res, upsample=[])
    axes = [torch.linspace(float(lo[k]), float(hi[k]), res) for k in range(3)]
    zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")  # grid axes D, H, W = z, y, x
    sdf = scene.sdf(torch.stack([xx, yy, zz], -1).reshape(-1, 3)).reshape(res, res, res, 1)
    voxel = float((hi - lo).max()) / (res - 1)
    raw = (-sdf / voxel * 4).clamp(-30, 10) - field.density_shift
    with torch.no_grad():
        field.density_grid.copy_(torch.full_like(raw, -40.0) if empty else raw)
        for m in field.color_net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.zero_()
                m.bias.zero_()
        last = [m for m in field.color_net.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.logit(torch.tensor(COLOR)))
    save_field(path, field, {"render": RENDER})
    return path


@pytest.fixture(scope="session")
def event_runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny simulated event data (2 train + 1 held-out sequences, 32x48) and a teacher and full student
    trained on it for a few steps (for CLI/reader tests; not for quality)."""
    from vision3d_kd.distill.event_vggt.model import NetConfig
    from vision3d_kd.distill.event_vggt.simulate import SimConfig, simulate_dataset
    from vision3d_kd.distill.event_vggt.teacher import load_geometry_teacher
    from vision3d_kd.distill.event_vggt.train import DistillConfig, train_network

    root = tmp_path_factory.mktemp("events")
    cfg = SimConfig(height=32, width=48, seconds=0.3, fps=40, frame_rate=20, supersample=1)
    simulate_dataset(root / "train", 2, 0, cfg)
    simulate_dataset(root / "test", 1, 100, cfg)
    net = dict(dim=32, heads=2, depth=2, patch=8, features=16)
    train_network(root / "train", root / "teacher", DistillConfig(input="rgb", supervision="gt", steps=4, batch=2,
                  net=NetConfig(**net)), show_progress=False)
    teacher, info = load_geometry_teacher(root / "teacher")
    train_network(root / "train", root / "student", DistillConfig(steps=4, batch=2, net=NetConfig(**net)), teacher,
                  info, show_progress=False)
    return {"root": root, "train": root / "train", "test": root / "test", "teacher": root / "teacher",
            "student": root / "student"}


@pytest.fixture(scope="module")
def sd_pipe(tmp_path_factory):
    """A tiny Stable-Diffusion-style pipeline saved to disk (one per test module)."""
    from tests.tiny_pipelines import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("sdgen"))
