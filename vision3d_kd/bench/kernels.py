"""Benchmark of the fused CPU kernels against their plain-PyTorch references.

Times forward and forward+backward of each kernel at realistic sizes and reports the speed-up
(reference time / fused time, forward+backward). Writes no files; the CLI stores the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor

from vision3d_kd import kernels as K

__all__ = ["run", "hash_resolutions"]


def hash_resolutions(n_levels: int = 16, base: int = 16, finest: int = 2048) -> Tensor:
    """Instant-NGP geometric level resolutions ``[L]`` int32 from ``base`` to ``finest``."""
    growth = math.exp((math.log(finest) - math.log(base)) / max(n_levels - 1, 1))
    res = [int(math.floor(base * growth**level + 1e-6)) for level in range(n_levels)]
    return torch.tensor(res, dtype=torch.int32)


def _median_ms(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up (and first-use build)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def _measure(
    kernel: str,
    impl: str,
    n: int,
    fwd: Callable[[], list[Tensor]],
    params: list[Tensor],
    repeats: int,
) -> dict:
    """Row for one implementation: ``fwd()`` returns outputs that depend on ``params``."""
    torch.manual_seed(1)
    grads = [torch.randn_like(o) for o in fwd()]

    def forward() -> None:
        with torch.no_grad():
            fwd()

    def forward_backward() -> None:
        for p in params:
            p.grad = None
        torch.autograd.backward(fwd(), grads)

    fwd_ms = _median_ms(forward, repeats)
    fb_ms = _median_ms(forward_backward, repeats)
    return {
        "kernel": kernel,
        "impl": impl,
        "n": n,
        "fwd_ms": round(fwd_ms, 3),
        "fwd_bwd_ms": round(fb_ms, 3),
        "msamples_per_s": round(n / (fb_ms * 1e-3) / 1e6, 3),
    }


def _hash_rows(n: int, repeats: int) -> list[dict]:
    res = hash_resolutions(16, 16, 2048)
    table = (torch.rand(16, 2**19, 2) * 2e-4 - 1e-4).requires_grad_()
    x = torch.rand(n, 3)
    return [
        _measure("hash", "reference", n, lambda: [K.hash_encode_ref(x, table, res)], [table], repeats),
        _measure("hash", "fused", n, lambda: [K.hash_encode(x, table, res)], [table], repeats),
    ]


def _volume_rows(n: int, repeats: int, size: int) -> list[dict]:
    density = torch.randn(size, size, size, 1).requires_grad_()
    feats = torch.randn(size, size, size, 12).requires_grad_()
    x = torch.rand(n, 3) * 2 - 1
    rows = []
    for impl, fn in (("reference", K.sample_volume_ref), ("fused", K.sample_volume)):
        rows.append(
            _measure("volume", impl, n, lambda fn=fn: [fn(density, x), fn(feats, x)], [density, feats], repeats)
        )
    return rows


def _planes_rows(n: int, repeats: int) -> list[dict]:
    planes = torch.randn(3, 300, 300, 48).requires_grad_()
    lines = torch.randn(3, 300, 48).requires_grad_()
    uv = torch.rand(3, n, 2) * 2 - 1
    t = torch.rand(3, n) * 2 - 1
    rows = []
    for impl, fp, fl in (
        ("reference", K.sample_planes_ref, K.sample_lines_ref),
        ("fused", K.sample_planes, K.sample_lines),
    ):
        rows.append(_measure("planes", impl, 3 * n, lambda fp=fp: [fp(planes, uv)], [planes], repeats))
        rows.append(_measure("lines", impl, 3 * n, lambda fl=fl: [fl(lines, t)], [lines], repeats))
    return rows


def _composite_rows(n_rays: int, per_ray: int, repeats: int) -> list[dict]:
    s = n_rays * per_ray
    ray_indices = torch.arange(n_rays).repeat_interleave(per_ray)
    t = torch.linspace(2.0, 6.0, per_ray + 1)
    t_starts = t[:-1].repeat(n_rays)
    t_ends = t[1:].repeat(n_rays)
    sigmas = (torch.rand(s) * 2).requires_grad_()
    rgbs = torch.rand(s, 3).requires_grad_()
    rows = []
    for impl, fn in (("reference", K.composite_ref), ("fused", K.composite)):
        rows.append(
            _measure(
                "composite",
                impl,
                s,
                lambda fn=fn: list(fn(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)),
                [sigmas, rgbs],
                repeats,
            )
        )
    return rows


def _speedup(rows: list[dict], kernel: str) -> float:
    by_impl = {r["impl"]: r for r in rows if r["kernel"] == kernel}
    if "fused" not in by_impl or "reference" not in by_impl:
        return float("nan")
    return round(by_impl["reference"]["fwd_bwd_ms"] / by_impl["fused"]["fwd_bwd_ms"], 2)


def run(quick: bool = False) -> dict:
    """Run the kernel benchmark.

    Sizes (full): hash 16 levels, T=2^19, F=2, resolutions 16..2048, N=2^18 points; volume 160^3
    grids with C=1 and C=12, N=2^18; TensoRF planes 3x300^2 and lines 3x300, C=48, N=2^18 per plane;
    composite 4096 rays x 64 samples. ``quick=True`` uses N=2^15 and fewer repeats (< 60 s).

    Returns:
        ``{"rows": [{kernel, impl, n, fwd_ms, fwd_bwd_ms, msamples_per_s}, ...],
        "summary": {"speedup_hash", "speedup_grid", "speedup_composite", ...,
        "fused_available", "threads"}}``; ``speedup_grid`` is the volume speed-up.
    """
    n = 2**15 if quick else 2**18
    repeats = 2 if quick else 5
    available = K.fused_available()
    rows: list[dict] = []
    rows += _hash_rows(n, repeats)
    rows += _volume_rows(n, repeats, 160)
    rows += _planes_rows(n, repeats)
    rows += _composite_rows(1024 if quick else 4096, 64, repeats)
    summary = {
        "speedup_hash": _speedup(rows, "hash"),
        "speedup_grid": _speedup(rows, "volume"),
        "speedup_composite": _speedup(rows, "composite"),
        "speedup_planes": _speedup(rows, "planes"),
        "speedup_lines": _speedup(rows, "lines"),
        "fused_available": all(available.values()),
        "threads": torch.get_num_threads(),
    }
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=1))
