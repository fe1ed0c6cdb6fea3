"""A non-editable install carries the bundled models: build a wheel of the package, install it into a fresh
venv (the dependencies come from this interpreter's site-packages, the editable vision3d_kd does not), and
sample the bundled prior with `v3kd prior sample` from a directory outside the repository."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

NEEDS = {"venv": "the venv module", "pip": "pip", "setuptools": "setuptools (for --no-build-isolation)"}


def run(args: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run ARGS; on failure, assert with its output (pip and the CLI explain themselves)."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_wheel_installs_with_its_bundled_models(tmp_path):
    missing = [what for mod, what in NEEDS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        pytest.skip(f"cannot build and install a wheel offline here: no {', '.join(missing)}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")

    # the wheel, built from a copy of the package so that the build leaves nothing in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "vision3d_kd", src / "vision3d_kd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist,
         src], tmp_path, env)
    (wheel,) = dist.glob("vision3d_kd-*.whl")

    # a fresh venv that sees this interpreter's packages through a path line in a .pth file: the .pth files
    # in that directory (the editable install's finder among them) are not processed, so vision3d_kd is absent
    venv = tmp_path / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True,
                       timeout=120)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"python -m venv does not work here: {exc.stderr.decode(errors='replace').strip()}")
    python = next(p for p in (venv / "bin" / "python", venv / "Scripts" / "python.exe") if p.exists())
    paths = json.loads(run([python, "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"],
                           tmp_path, env).stdout)
    site, scripts = Path(paths["purelib"]).resolve(), Path(paths["scripts"])
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "v3kd_test_deps.pth").write_text("".join(f"{p}\n" for p in ours))
    probe = subprocess.run([str(python), "-c", "import vision3d_kd"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert probe.returncode != 0 and "No module named 'vision3d_kd'" in probe.stderr, (
        f"vision3d_kd is importable in the fresh venv before the install:\n{probe.stdout}{probe.stderr}")
    # pip (from the visible site-packages) installs into the fresh venv; --ignore-installed: never touch the
    # vision3d_kd that pip sees in the other site-packages
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel], tmp_path, env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    v3kd = next(p for p in (scripts / "v3kd", scripts / "v3kd.exe") if p.exists())
    run([v3kd, "prior", "sample", "a red mug", "--out", "x.png", "--steps", "1"], work, env)
    from PIL import Image

    with Image.open(work / "x.png") as img:
        img.load()
        assert img.width >= 16 and img.height >= 16

    where = json.loads(run([python, "-c", (
        "import json, vision3d_kd, vision3d_kd.assets as a\n"
        "from vision3d_kd.distill.event_vggt.teacher import load_geometry_teacher\n"
        "_, info = load_geometry_teacher()\n"
        "print(json.dumps({'package': vision3d_kd.__file__, 'prior': str(a.default_prior_path()),"
        " 'teacher': info['path'], 'kind': info['teacher']}))")], work, env).stdout)
    assert where["kind"] == "bundled"
    for key in ("package", "prior", "teacher"):
        path = Path(where[key]).resolve()
        assert path.is_relative_to(site / "vision3d_kd"), f"{key}: {path} is not inside the installed package"
        assert not path.is_relative_to(REPO), f"{key}: {path} is in the checkout"
    installed = Path(where["prior"])
    assert sorted(p.relative_to(installed).as_posix() for p in installed.rglob("*") if p.is_file()) == sorted(
        p.relative_to(REPO / "vision3d_kd/assets/prior").as_posix()
        for p in (REPO / "vision3d_kd/assets/prior").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
