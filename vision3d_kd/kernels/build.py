"""Build C++/OpenMP extensions on first use with ``torch.utils.cpp_extension.load``.

Builds land in ``${V3KD_CACHE:-~/.cache/vision3d_kd}/torch_extensions/<name>_<hash>``, where the
hash covers the source text, the torch and Python versions, the compiler flags and (because of
``-march=native``) the CPU model, so a changed source or machine never reuses a stale binary.
A failed build (or ``V3KD_NO_EXT=1``) returns ``None`` and warns once; callers then fall back to
their plain-PyTorch reference.

Processes that build the same extension take turns through an OS file lock (``fcntl.flock``, released when
its holder dies). torch's own lock is a file that a killed build (Ctrl-C, an OOM kill) leaves behind, after
which every later build waits for it forever; whoever holds the OS lock knows that file is stale and removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import platform
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

import torch

__all__ = ["load_extension", "extension_cache_dir", "extensions_disabled", "CFLAGS", "LDFLAGS"]

CFLAGS = ["-O3", "-fopenmp", "-march=native"]
LDFLAGS = ["-fopenmp"]

_CACHE: dict[str, ModuleType | None] = {}
_WARNED: set[str] = set()
_LOCK = threading.Lock()


def extensions_disabled() -> bool:
    """True when the environment asks for the plain-PyTorch path (``V3KD_NO_EXT=1``)."""
    return os.environ.get("V3KD_NO_EXT", "").strip().lower() in ("1", "true", "yes", "on")


def extension_cache_dir() -> pathlib.Path:
    """Root of the build cache: ``${V3KD_CACHE:-~/.cache/vision3d_kd}/torch_extensions``."""
    root = os.environ.get("V3KD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vision3d_kd")
    return pathlib.Path(root) / "torch_extensions"


def _cpu_model() -> str:
    """CPU model name and ISA flags (they decide what ``-march=native`` emits)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


def _build_key(sources: list[pathlib.Path]) -> str:
    """Short hash of everything that changes the binary."""
    h = hashlib.sha256()
    for src in sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    for part in (torch.__version__, sys.version, " ".join(CFLAGS), " ".join(LDFLAGS), _cpu_model()):
        h.update(part.encode())
    return h.hexdigest()[:12]


def _ensure_ninja_on_path() -> None:
    """Put the ninja binary of this interpreter's environment on PATH if the shell has none."""
    if shutil.which("ninja"):
        return
    candidates = [pathlib.Path(sys.executable).parent]
    try:
        import ninja  # type: ignore[import-not-found]

        candidates.insert(0, pathlib.Path(ninja.BIN_DIR))
    except (ImportError, AttributeError):
        pass
    for directory in candidates:
        if (directory / "ninja").exists():
            os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
            return


@contextlib.contextmanager
def _build_turn(build_dir: pathlib.Path) -> Iterator[None]:
    """Hold `build_dir`'s OS lock (module docstring) and remove torch's lock file, which only a dead build can
    have left while we hold it; without fcntl (Windows) torch's lock alone."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(build_dir / ".v3kd-build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (build_dir / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _warn_once(name: str, message: str) -> None:
    if name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def load_extension(name: str, sources: list[pathlib.Path]) -> ModuleType | None:
    """Build (or load from cache) the C++ extension ``name`` from ``sources``.

    Args:
        name: short identifier, e.g. ``"hash"``; the module is named ``v3kd_<name>_<hash>``.
        sources: C++ files; exactly one defines ``PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)``.

    Returns:
        The loaded module, or ``None`` (with a one-time ``RuntimeWarning``) when the build fails or
        ``V3KD_NO_EXT=1``. The result is cached per process (a failed build is not retried).
    """
    if extensions_disabled():
        _warn_once("V3KD_NO_EXT", "vision3d_kd: V3KD_NO_EXT=1: fused C++ kernels off, using the PyTorch references.")
        return None
    sources = [pathlib.Path(s) for s in sources]
    with _LOCK:
        if name in _CACHE:
            return _CACHE[name]
        module: ModuleType | None = None
        try:
            from torch.utils import cpp_extension

            key = _build_key(sources)
            build_dir = extension_cache_dir() / f"{name}_{key}"
            build_dir.mkdir(parents=True, exist_ok=True)
            _ensure_ninja_on_path()
            with _build_turn(build_dir):
                module = cpp_extension.load(
                    name=f"v3kd_{name}_{key}",
                    sources=[str(s) for s in sources],
                    extra_cflags=list(CFLAGS),
                    extra_ldflags=list(LDFLAGS),
                    build_directory=str(build_dir),
                    verbose=os.environ.get("V3KD_EXT_VERBOSE", "") == "1",
                )
        except Exception as exc:  # any build failure means "use the reference"
            module = None
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _warn_once(
                name,
                f"vision3d_kd: building C++ extension '{name}' failed ({first_line}); "
                "using the plain-PyTorch reference (set V3KD_EXT_VERBOSE=1 to see the compiler).",
            )
        _CACHE[name] = module
        return module
