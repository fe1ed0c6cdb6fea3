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
    """Row for one implementation: ``fwd()`` returns outputs that depend on ``params``.

    One untimed forward+backward warms up (first-use build, allocator, caches); then the median of
    ``repeats`` forward passes (no autograd) and of ``repeats`` forward+backward passes (a single
    one of each when the warm-up took over 3 s: the slow references).
    """
    gen = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    outs = fwd()
    grads = [torch.randn(o.shape, generator=gen) for o in outs]
    torch.autograd.backward(outs, grads)
    del outs
    if time.perf_counter() - t0 > 3.0:
        repeats = 1

    def forward() -> None:
        with torch.no_grad():
            fwd()

    def forward_backward() -> None:
        for p in params:
            p.grad = None
        torch.autograd.backward(fwd(), grads)

    fwd_ms = _median_ms(forward, repeats)
    fb_ms = _median_ms(forward_backward, repeats)
    for p in params:
        p.grad = None
    return {
        "kernel": kernel,
        "impl": impl,
        "n": n,
        "fwd_ms": round(fwd_ms, 3),
        "fwd_bwd_ms": round(fb_ms, 3),
        "msamples_per_s": round(n / (fb_ms * 1e-3) / 1e6, 3),
    }


def _ref_repeats(repeats: int) -> int:
    """The slow references get fewer timed repeats."""
    return max(1, repeats // 2)


def _hash_rows(x: Tensor, repeats: int) -> list[dict]:
    res = hash_resolutions(16, 16, 2048)
    table = (torch.rand(16, 2**19, 2) * 2e-4 - 1e-4).requires_grad_()
    n = x.shape[0]
    ref, fused = K.hash_encode_ref, K.hash_encode
    return [
        _measure("hash", "reference", n, lambda: [ref(x, table, res)], [table], _ref_repeats(repeats)),
        _measure("hash", "fused", n, lambda: [fused(x, table, res)], [table], repeats),
    ]


def ray_points(n_rays: int, per_ray: int, seed: int = 0) -> Tensor:
    """``[n_rays * per_ray, 3]`` points in ``[-1, 1]^3``, ``per_ray`` evenly spaced on each of
    ``n_rays`` random chords (ray order, as a ray marcher produces them)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n_rays, 1, 3, generator=g) * 2 - 1
    b = torch.rand(n_rays, 1, 3, generator=g) * 2 - 1
    s = torch.linspace(0.0, 1.0, per_ray)[None, :, None]
    return (a + (b - a) * s).reshape(-1, 3)


def _volume_rows(x: Tensor, repeats: int, size: int, kernel: str) -> list[dict]:
    density = torch.randn(size, size, size, 1).requires_grad_()
    feats = torch.randn(size, size, size, 12).requires_grad_()
    n = x.shape[0]
    rows = []
    for impl, fn in (("reference", K.sample_volume_ref), ("fused", K.sample_volume)):
        reps = _ref_repeats(repeats) if impl == "reference" else repeats
        both = [density, feats]
        rows.append(_measure(kernel, impl, n, lambda fn=fn: [fn(density, x), fn(feats, x)], both, reps))
    return rows


def _planes_rows(x: Tensor, repeats: int) -> list[dict]:
    planes = torch.randn(3, 300, 300, 48).requires_grad_()
    lines = torch.randn(3, 300, 48).requires_grad_()
    uv = torch.stack([x[:, [0, 1]], x[:, [0, 2]], x[:, [1, 2]]]).contiguous()  # TensoRF VM planes
    t = torch.stack([x[:, 2], x[:, 1], x[:, 0]]).contiguous()  # and their complementary lines
    n = 3 * x.shape[0]
    rows = []
    for impl, fp, fl in (
        ("reference", K.sample_planes_ref, K.sample_lines_ref),
        ("fused", K.sample_planes, K.sample_lines),
    ):
        reps = _ref_repeats(repeats) if impl == "reference" else repeats
        rows.append(_measure("planes", impl, n, lambda fp=fp: [fp(planes, uv)], [planes], reps))
        rows.append(_measure("lines", impl, n, lambda fl=fl: [fl(lines, t)], [lines], reps))
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
        reps = _ref_repeats(repeats) if impl == "reference" else repeats
        rows.append(
            _measure(
                "composite",
                impl,
                s,
                lambda fn=fn: list(fn(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)),
                [sigmas, rgbs],
                reps,
            )
        )
    return rows


def _speedup(rows: list[dict], kernel: str) -> float:
    by_impl = {r["impl"]: r for r in rows if r["kernel"] == kernel}
    if "fused" not in by_impl or "reference" not in by_impl:
        return float("nan")
    return round(by_impl["reference"]["fwd_bwd_ms"] / by_impl["fused"]["fwd_bwd_ms"], 2)


def run(quick: bool = False) -> dict:
    """Run the kernel benchmark (forward and forward+backward, reference vs fused).

    Sizes (full): hash 16 levels, T=2^19, F=2, resolutions 16..2048; volume 160^3 grids with C=1
    and C=12 (both sampled per call); TensoRF planes 3x300^2 and lines 3x300 with C=48; 2^18 points,
    64 evenly spaced on each of 4096 random chords of the cube (ray order, as a ray marcher makes
    them; ``volume_uniform`` repeats the volume case with i.i.d. uniform points, the worst case for
    caches). Composite: 4096 rays x 64 samples. ``quick=True``: 512 chords (hash: 128) and fewer
    repeats.

    Returns:
        ``{"rows": [{kernel, impl, n, fwd_ms, fwd_bwd_ms, msamples_per_s}, ...], "summary": {...}}``
        with ``speedup_hash``, ``speedup_grid`` (volume, ray points), ``speedup_composite`` = reference
        / fused forward+backward time, plus ``speedup_grid_uniform``, ``speedup_planes``,
        ``speedup_lines``, ``fused_available`` and ``threads``.
    """
    n_rays = 512 if quick else 4096
    repeats = 2 if quick else 6
    available = K.fused_available()
    pts = ray_points(n_rays, 64)  # in [-1, 1]^3
    rows: list[dict] = []
    # The hash reference is the slowest by far: the quick run encodes a quarter of the points.
    rows += _hash_rows((pts[: pts.shape[0] // 4] if quick else pts) * 0.5 + 0.5, repeats)
    rows += _volume_rows(pts, repeats, 160, "volume")
    rows += _volume_rows(torch.rand(pts.shape[0], 3) * 2 - 1, repeats, 160, "volume_uniform")
    rows += _planes_rows(pts, repeats)
    rows += _composite_rows(n_rays, 64, repeats)
    summary = {
        "speedup_hash": _speedup(rows, "hash"),
        "speedup_grid": _speedup(rows, "volume"),
        "speedup_composite": _speedup(rows, "composite"),
        "speedup_grid_uniform": _speedup(rows, "volume_uniform"),
        "speedup_planes": _speedup(rows, "planes"),
        "speedup_lines": _speedup(rows, "lines"),
        "fused_available": all(available.values()),
        "threads": torch.get_num_threads(),
    }
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
