"""Splat files of runs: a splats run -> a 3DGS PLY / .splat / .spz file, and a splat file -> a new splats run
directory (what `v3kd export --format 3dgs-ply|splat|spz` and `v3kd import-splats` do). The codecs are in
`data/splat_io.py`."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..data.axes import up_rotation
from ..data.splat_io import read_splats, write_splats
from ..data.spz import VERSIONS as SPZ_VERSIONS
from ..errors import ConfigError, RunError
from ..fields.splats import GaussianSplats
from ..runs import capture_transform, load_field, save_field
from .frame import check_frame, splats_to_capture

__all__ = ["SPLAT_FORMATS", "export_splats", "import_splats", "padded_box"]

SPLAT_FORMATS = ("3dgs-ply", "splat", "spz")


def export_splats(run: Path, fmt: str, out: Path, spz_version: int = 2, up: str | None = None,
                  frame: str = "normalized") -> GaussianSplats:
    """Write the Gaussians of splats run `run` to `out` as `fmt` (3dgs-ply, splat or spz; atomically), in the
    run's model frame or (`frame="capture"`) the capture's own frame, turned so that the file's axis `up`
    points up (default: the format's convention, `data.splat_io.DEFAULT_UP`). spz only: file `spz_version`
    (2, 3 or 4). Returns the model."""
    if fmt not in SPLAT_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(SPLAT_FORMATS)} for splats, got {fmt!r}")
    check_frame(frame)
    if fmt == "spz" and spz_version not in SPZ_VERSIONS:
        raise ConfigError(f"--spz-version must be one of {', '.join(map(str, SPZ_VERSIONS))}, got {spz_version}")
    if up is not None:
        up_rotation(up)  # a bad axis fails before the run is loaded
    model, cfg = load_field(run)
    if getattr(model, "name", "") != "splats":
        raise RunError(f"{run}: --format {fmt} needs a splats run (fit with --field splats)")
    options = {"version": spz_version} if fmt == "spz" else {}
    params = model.to_params()
    if frame == "capture":
        params = splats_to_capture(params, capture_transform(cfg).numpy())
    write_splats(params, out, fmt, up=up, **options)
    return model


def padded_box(means: Tensor, pad: float = 0.05) -> list[list[float]]:
    """[[min xyz], [max xyz]] of the Gaussians' centres [N,3] (world units), grown on each side by `pad` times
    the extent of that axis (at least 1e-3 of it, so a flat cloud keeps a thickness)."""
    lo, hi = means.min(0).values, means.max(0).values
    margin = pad * (hi - lo).clamp_min(1e-3)
    return [(lo - margin).tolist(), (hi + margin).tolist()]


def import_splats(file: Path, out: Path, up: str | None = None) -> GaussianSplats:
    """Create splats run directory `out` (new or empty) from a .ply (3DGS layout), .splat or .spz file whose
    axis `up` points up (default: the format's convention, as `export_splats` writes it); the run's box is
    the centres' box padded by 5 % per axis and all SH degrees of the file are active. Returns the model."""
    file, out = Path(file), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: already exists and is not empty")
    params = read_splats(file, up=up)
    degree = int(round(params["sh"].shape[1] ** 0.5)) - 1
    splats = GaussianSplats(aabb=padded_box(params["means"]), n=0, sh_degree=degree).set_params(params)
    splats.active_sh_degree.fill_(degree)
    save_field(out, splats, {"imported_from": str(file.resolve())})
    return splats
