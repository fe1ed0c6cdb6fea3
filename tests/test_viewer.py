"""`v3kd view`: the viser viewer serves a run; headless Chromium loads the page and must see the object."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import analytic_run
from vision3d_kd.bench.chromium import CHROMIUM, wait_for

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _screenshot(run: Path, out: Path, *extra: str) -> np.ndarray:
    """Serve `run` with `v3kd view` and return Chromium's screenshot of the page [768,1024,3] in [0,1], taken
    as soon as the object fills the centre (polled, up to 180 s: the scene arrives over a websocket)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "vision3d_kd.cli.main", "view", str(run), "--port", str(port), "--resolution", "48",
           "--device", "cpu", *extra]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.time() + 240
        while "viewer at" not in line and time.time() < deadline and server.poll() is None:
            line = server.stdout.readline()
        assert f"viewer at http://127.0.0.1:{port}" in line, line
        return wait_for(f"http://127.0.0.1:{port}", lambda img: _object_visible(img) > 0.5, out)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _object_visible(img: np.ndarray) -> float:
    """Share of the central pixels that differ clearly from the page's background (its corner colour)."""
    h, w, _ = img.shape
    bg = np.median(img[h // 2 - 40 : h // 2 + 40, 4:20].reshape(-1, 3), axis=0)  # left edge, mid height
    centre = img[h // 2 - 60 : h // 2 + 60, w // 2 - 60 : w // 2 + 60].reshape(-1, 3)
    return float((np.abs(centre - bg).sum(-1) > 0.15).mean())


def test_viewer_shows_a_field_runs_mesh(tmp_path):
    run = analytic_run(tmp_path / "run", "sphere", res=32)
    img = _screenshot(run, tmp_path / "mesh.png")
    assert _object_visible(img) > 0.5


def test_viewer_shows_a_splats_run(tmp_path):
    from vision3d_kd.fields.splats import GaussianSplats
    from vision3d_kd.runs import save_field

    g = torch.Generator().manual_seed(0)
    pts = torch.nn.functional.normalize(torch.randn(3000, 3, generator=g), dim=-1) * 0.8
    splats = GaussianSplats(aabb=[[-1.5] * 3, [1.5] * 3], n=0, sh_degree=0)
    splats.init_points(pts, torch.tensor([[0.9, 0.2, 0.1]]).expand(3000, 3), opacity=0.9, generator=g)
    save_field(tmp_path / "splats", splats, {"render": {"radius": 4.0, "elevation_deg": 30.0, "fov_y_deg": 40.0}})
    img = _screenshot(tmp_path / "splats", tmp_path / "splats.png")
    assert _object_visible(img) > 0.5
