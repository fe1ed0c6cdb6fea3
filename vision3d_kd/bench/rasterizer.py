"""`v3kd bench rasterizer`: Gaussian splat rasterization forward and forward+backward time and peak
memory for 10k / 100k / 300k Gaussians at 200x200 and 400x400: the fused CPU kernel, the pure-torch
reference (smallest case, for the speed-up ratio) and gsplat on CUDA when available. Each case runs
in its own process so peak memory (max RSS, or CUDA max allocated) is per case."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["run", "measure"]

CASES = [(10_000, 200), (100_000, 200), (300_000, 200), (10_000, 400), (100_000, 400), (300_000, 400)]
QUICK_CASES = [(10_000, 200), (100_000, 200)]


def _scene(n: int, res: int, device: str):
    """A lego-sized cloud: n Gaussians in [-1,1]^3 seen from 4 units away, fov ~40 degrees."""
    import math

    import torch

    from ..cameras import Cameras, look_at
    from ..fields.splats import GaussianSplats

    g = torch.Generator().manual_seed(0)
    sp = GaussianSplats(n=0, sh_degree=3)
    pts = torch.rand(n, 3, generator=g) * 2 - 1
    sh = torch.randn(n, 16, 3, generator=g) * 0.2
    scale = 0.6 * (8.0 / n) ** (1 / 3)  # about the mean neighbour distance
    log_scales = torch.full((n, 3), math.log(scale)) + 0.3 * torch.randn(n, 3, generator=g)
    sp.set_params({"means": pts, "log_scales": log_scales,
                   "quats": torch.randn(n, 4, generator=g), "opacity_logits": torch.randn(n, generator=g), "sh": sh})
    sp.active_sh_degree.fill_(3)
    c2w = look_at(torch.tensor([2.5, -2.5, 2.0]), torch.zeros(3), "+z")
    f = 0.5 * res / math.tan(math.radians(20))
    cam = Cameras(c2w[None], f, f, res / 2, res / 2, res, res)
    return sp.to(device), cam.to(device)


def measure(n: int, res: int, backend: str, repeats: int) -> dict[str, Any]:
    """Time one case in this process: seconds per forward and per forward+backward, peak memory MB."""
    import resource
    import time

    import torch

    from ..render.splat import render_splats

    device = "cuda" if backend == "gsplat" else "cpu"
    sp, cam = _scene(n, res, device)
    bg = torch.ones(3, device=device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        render_splats(sp, cam, bg, backend=backend)  # warm-up (builds the extension on first use)
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        with torch.no_grad():
            render_splats(sp, cam, bg, backend=backend)
    sync()
    fwd = (time.perf_counter() - t0) / repeats
    render_splats(sp, cam, bg, backend=backend)["rgb"].square().sum().backward()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        sp.zero_grad(set_to_none=True)
        render_splats(sp, cam, bg, backend=backend)["rgb"].square().sum().backward()
    sync()
    fb = (time.perf_counter() - t0) / repeats
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"fwd_s": fwd, "fwd_bwd_s": fb, "peak_mb": peak}


def _run_case(n: int, res: int, backend: str, repeats: int) -> dict[str, Any]:
    code = (f"import json; from vision3d_kd.bench.rasterizer import measure; "
            f"print(json.dumps(measure({n}, {res}, {backend!r}, {repeats})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, Any]:
    """All cases for the fused CPU kernel, the torch reference at 10k/200 px, gsplat when CUDA works."""
    import torch

    from ..render.splat_gsplat import gsplat_available

    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    backends = ["cpu"] + (["gsplat"] if torch.cuda.is_available() and gsplat_available() else [])
    for n, res in QUICK_CASES if quick else CASES:
        for backend in backends:
            r = _run_case(n, res, backend, 2 if n >= 100_000 else 4)
            rows.append({"gaussians": n, "resolution": res, "backend": backend, **r})
    ref = _run_case(10_000, 200, "torch", 1)
    rows.append({"gaussians": 10_000, "resolution": 200, "backend": "torch (reference)", **ref})
    cpu = {(r["gaussians"], r["resolution"]): r for r in rows if r["backend"] == "cpu" and "fwd_bwd_s" in r}
    if (100_000, 200) in cpu:
        summary["fwd_bwd_100k_200px_s"] = round(cpu[(100_000, 200)]["fwd_bwd_s"], 4)
    if (10_000, 200) in cpu and "fwd_bwd_s" in ref:
        summary["speedup_vs_torch_10k_200px"] = round(ref["fwd_bwd_s"] / cpu[(10_000, 200)]["fwd_bwd_s"], 2)
    return {"rows": rows, "summary": summary}
