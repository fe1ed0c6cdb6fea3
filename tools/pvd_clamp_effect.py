"""What clamping a teacher's log density to PVD's [-2, 7] inside its forward pass (as the PVD paper's code does in
both networks) costs the teacher itself: held-out PSNR of a field run rendered as fitted and rendered with
log sigma clamped, on its own test split. The README's "Where we differ" row cites the result.

    python tools/pvd_clamp_effect.py RUN [--lo -2] [--hi 7]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from vision3d_kd.data import held_out_split, load_dataset
from vision3d_kd.evaluate import evaluate_field
from vision3d_kd.runs import data_options_from, load_run, render_settings_from


class _ClampLogDensity(nn.Module):
    """Wraps a density network whose output column 0 is log sigma: that column clamped to [lo, hi]."""

    def __init__(self, net: nn.Module, lo: float, hi: float) -> None:
        super().__init__()
        self.net, self.lo, self.hi = net, lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return torch.cat([out[:, :1].clamp(self.lo, self.hi), out[:, 1:]], dim=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--lo", type=float, default=-2.0)
    ap.add_argument("--hi", type=float, default=7.0)
    args = ap.parse_args()
    field, grid, cfg = load_run(args.run)
    if not hasattr(field, "density_net"):
        raise SystemExit(f"{args.run}: not a field with a density network (hashgrid, mlp)")
    data = Path(cfg["data"])
    ds = load_dataset(data, held_out_split(data), **data_options_from(cfg))
    settings = render_settings_from(cfg)
    with torch.no_grad():
        plain = evaluate_field(field, ds, grid, settings)
        field.density_net = _ClampLogDensity(field.density_net, args.lo, args.hi)
        clamped = evaluate_field(field, ds, grid, settings)
    print(json.dumps({"run": str(args.run), "views": plain["n_views"], "psnr_as_fitted": round(plain["psnr"], 3),
                      f"psnr_log_density_clamped_{args.lo:g}_{args.hi:g}": round(clamped["psnr"], 3),
                      "difference_db": round(clamped["psnr"] - plain["psnr"], 3)}))


if __name__ == "__main__":
    main()
