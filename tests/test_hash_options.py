"""Options of the fused hash encoding (`kernels/hash.py`): strided gradients read in place, constant tail
columns written beside the features, locked levels not looked up; and the CLI's heap settings
(`kernels/pool.keep_heap_memory`)."""

from __future__ import annotations

import sys

import pytest
import torch

from vision3d_kd import kernels as K

from .test_kernels import _close, _grads


def test_hash_backward_reads_strided_gradients_without_a_copy(ext):
    """A gradient that is a column slice of a wider one (the features before a one-hot in a cat) is read in
    place: the table's and the points' gradients equal those of the same gradient made contiguous."""
    torch.manual_seed(2)
    x = torch.rand(3000, 3, requires_grad=True)
    table = torch.randn(3, 4096, 2, requires_grad=True)
    res = torch.tensor([8, 40, 300], dtype=torch.int32)
    wide = torch.randn(3000, 9)  # 6 feature columns, then 3 more
    grads = []
    for g in (wide[:, :6], wide[:, :6].contiguous()):
        x.grad = table.grad = None
        K.hash_encode(x, table, res).backward(g)
        grads.append((table.grad.clone(), x.grad.clone()))
    assert not wide[:, :6].is_contiguous()
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    sums = [torch.autograd.grad(fn(x.detach(), table, res).sum(), table)[0]  # .sum(): an expanded gradient
            for fn in (K.hash_encode, K.hash_encode_ref)]
    _close(sums[0], sums[1])


@pytest.mark.parametrize("fused", [True, False])
def test_hash_tail_columns_equal_a_cat(ext, fused):
    """`tail` writes constant columns after the features in the same output: values and gradients equal
    `torch.cat([hash_encode(...), tail], 1)`, for a [C] and an [N, C] tail, fused and on the reference path."""
    torch.manual_seed(3)
    x = torch.rand(2000, 3)
    table = torch.randn(3, 2048, 2, requires_grad=True)
    res = torch.tensor([8, 40, 300], dtype=torch.int32)
    x_in = x if fused else x.double()  # float64 takes the reference path
    tab = table if fused else table.double()
    for tail in (torch.tensor([0.0, 1.0, 0.0]), torch.rand(2000, 4)):
        (a,), (ga,) = _grads(lambda t=tail: K.hash_encode(x_in, tab, res, t), [table])
        (b,), (gb,) = _grads(lambda t=tail: torch.cat([K.hash_encode(x_in, tab, res), t.to(tab).expand(2000, -1)], 1),
                             [table])
        assert a.shape == (2000, 6 + tail.shape[-1])
        assert torch.equal(a, b) and torch.equal(ga, gb)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("levels", [0, 2, 3, 7])
def test_hash_levels_zero_the_locked_levels_as_a_mask_does(ext, fused, levels):
    """`levels` looks up only the first levels: values, table and point gradients equal the full encoding
    times a 0/1 column mask (the locked levels' rows get exactly zero gradient), with a tail after them."""
    torch.manual_seed(4)
    dtype = torch.float32 if fused else torch.float64  # float64 takes the reference path
    x = torch.rand(1500, 3, dtype=dtype, requires_grad=True)
    table = torch.randn(3, 2048, 2, dtype=dtype, requires_grad=True)
    res = torch.tensor([8, 40, 300], dtype=torch.int32)
    mask = (torch.arange(6) < 2 * min(levels, 3)).to(dtype)
    tail = torch.tensor([1.0, 0.0], dtype=dtype)
    (a,), (ga_t, ga_x) = _grads(lambda: K.hash_encode(x, table, res, tail, levels=levels), [table, x])
    (b,), (gb_t, gb_x) = _grads(lambda: torch.cat([K.hash_encode(x, table, res) * mask, tail.expand(1500, 2)], 1),
                                [table, x])
    assert torch.equal(a, b)
    _close(ga_t, gb_t)
    _close(ga_x, gb_x)
    assert (ga_t[min(levels, 3):] == 0).all()


def test_keep_heap_memory_reuses_freed_blocks(monkeypatch):
    """With glibc, keep_heap_memory takes its settings: an 8 MiB block then comes from the heap (the memory
    glibc has mapped for single blocks does not grow; with default settings it does), a 600 MiB one still gets a
    map of its own (the probe sees maps); V3KD_KEEP_HEAP=0 leaves malloc alone."""
    import ctypes
    import platform

    from vision3d_kd.kernels.pool import keep_heap_memory

    monkeypatch.setenv("V3KD_KEEP_HEAP", "0")
    assert keep_heap_memory() is False
    monkeypatch.delenv("V3KD_KEEP_HEAP")
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        pytest.skip("glibc only")
    assert keep_heap_memory() is True

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc < 2.33: no mallinfo2")
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def mapped_growth(nbytes: int) -> int:
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(nbytes)
        grown = libc.mallinfo2().hblkhd - before
        libc.free(block)
        return grown

    assert mapped_growth(8 << 20) == 0
    assert mapped_growth(600 << 20) >= 600 << 20  # more than the heap keeps free (256 MiB): mapped, untouched


def test_a_build_killed_midway_does_not_hang_the_next(tmp_path):
    """torch's lock file left by a killed build (nothing holds it) no longer makes the next build wait
    forever: a tiny extension builds and loads in a fresh process with the stale lock in its build folder."""
    import os
    import subprocess
    import textwrap

    from vision3d_kd.kernels import build

    if build.extensions_disabled():
        pytest.skip("fused kernels disabled by V3KD_NO_EXT=1")
    src = tmp_path / "tiny.cpp"
    src.write_text("#include <pybind11/pybind11.h>\nint answer() { return 42; }\n"
                   "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def(\"answer\", &answer); }\n")
    cache = tmp_path / "cache"
    env = {**os.environ, "V3KD_CACHE": str(cache)}
    key = subprocess.run([sys.executable, "-c", f"from vision3d_kd.kernels import build; import pathlib; "
                          f"print(build._build_key([pathlib.Path({str(src)!r})]))"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    folder = cache / "torch_extensions" / f"tiny_{key}"
    folder.mkdir(parents=True)
    (folder / "lock").touch()  # what a build killed midway leaves
    code = textwrap.dedent(f"""
        import pathlib
        from vision3d_kd.kernels import build
        m = build.load_extension("tiny", [pathlib.Path({str(src)!r})])
        print(m.answer())
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=150)
    assert out.stdout.strip() == "42", out.stderr[-2000:]
    assert not (folder / "lock").exists()
