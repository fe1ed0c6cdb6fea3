"""Read and write event streams as plain `.npz` or `.h5` files with arrays x, y, t, p (+ width, height).

Polarity may be stored as {-1, +1} or {0, 1}; times in seconds (or pass ``time_scale`` for
microseconds). Every problem is a one-line DataError naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ...checkpoint import atomic_write
from ...errors import DataError
from .events import Events

__all__ = ["load_events", "save_events"]

_FIELDS = ("x", "y", "t", "p")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]})") from None
    if suffix in (".h5", ".hdf5"):
        try:
            import h5py
        except ImportError:
            raise DataError(f"{path}: reading .h5 events needs h5py (pip install h5py)") from None
        try:
            with h5py.File(path, "r") as f:
                group = f["events"] if "events" in f and hasattr(f["events"], "keys") else f
                out = {k: np.asarray(group[k]) for k in group.keys() if hasattr(group[k], "shape")}
                out.update({k: np.asarray(v) for k, v in f.attrs.items() if k in ("width", "height")})
                return out
        except OSError as exc:
            raise DataError(f"{path}: not a readable HDF5 file ({str(exc).splitlines()[0]})") from None
    raise DataError(f"{path}: unknown event file type {suffix!r} (use .npz or .h5)")


def load_events(path: str | Path, width: int | None = None, height: int | None = None,
                time_scale: float = 1.0) -> Events:
    """Events from a file; the sensor size comes from the file's width/height entries or the arguments.

    Checks: all of x, y, t, p present, equal lengths, finite sorted times, coordinates inside the
    sensor, polarities in {-1, 1} or {0, 1}.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: event file not found")
    arrays = _read_arrays(path)
    for name in _FIELDS:
        if name not in arrays:
            what = {"p": "polarity", "t": "timestamps"}.get(name, "coordinates")
            raise DataError(f"{path}: no '{name}' array ({what}); event files need x, y, t, p")
    x, y, t, p = (np.asarray(arrays[k]).reshape(-1) for k in _FIELDS)
    if not len(x) == len(y) == len(t) == len(p):
        raise DataError(f"{path}: x, y, t, p have different lengths ({len(x)}, {len(y)}, {len(t)}, {len(p)})")
    w = int(np.asarray(arrays["width"]).reshape(-1)[0]) if "width" in arrays else width
    h = int(np.asarray(arrays["height"]).reshape(-1)[0]) if "height" in arrays else height
    if w is None or h is None or w < 1 or h < 1:
        raise DataError(f"{path}: sensor size unknown (store width/height in the file or pass them)")
    t = t.astype(np.float64) * time_scale
    if not np.isfinite(t).all():
        raise DataError(f"{path}: timestamps hold NaN or inf")
    back = np.nonzero(np.diff(t) < 0)[0]
    if len(back):
        i = int(back[0]) + 1
        raise DataError(f"{path}: timestamps decrease at event {i} ({t[i]:.6g} after {t[i - 1]:.6g}); sort them")
    for name, v, size in (("x", x, w), ("y", y, h)):
        if not np.issubdtype(v.dtype, np.integer):
            if not np.isfinite(v).all() or (v != np.round(v)).any():
                raise DataError(f"{path}: {name} coordinates must be integers")
        bad = np.nonzero((v < 0) | (v >= size))[0]
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{path}: event {i} has {name}={v[i]} outside the {w}x{h} sensor")
    values = set(np.unique(p).tolist())
    if not values <= {-1, 1} and not values <= {0, 1}:
        raise DataError(f"{path}: polarities must be -1/+1 or 0/1, found {sorted(values)[:4]}")
    pol = np.where(p > 0, 1, -1).astype(np.int8)
    return Events(x.astype(np.int64), y.astype(np.int64), t, pol, w, h)


def save_events(path: str | Path, ev: Events) -> None:
    """Write a compressed .npz (x, y uint16, t float64 seconds, p int8, width, height) atomically."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path}: events are written as .npz")
    atomic_write(path, lambda f: np.savez_compressed(
        f, x=ev.x.astype(np.uint16), y=ev.y.astype(np.uint16), t=ev.t.astype(np.float64),
        p=ev.p.astype(np.int8), width=np.int64(ev.width), height=np.int64(ev.height)))
