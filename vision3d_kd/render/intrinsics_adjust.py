"""Small corrections of camera intrinsics, one per physical camera, for intrinsics that are estimates.

Structure from motion trades the focal length against depth and lens distortion and keeps the principal
point at the image centre; phone apps and EXIF give nominal values. The images that share intrinsics
(equal fx, fy, cx, cy: one camera of a COLMAP model) form a group; each group learns (s, a, b):
fx' = fx·e^s, fy' = fy·e^s, cx' = cx + a·fx, cy' = cy + b·fy (s a log scale, a and b principal-point shifts
in focal units, so that one learning rate suits all three). Held-out images of the same camera use the
same correction.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from ..cameras import Cameras

__all__ = ["intrinsics_keys", "adjust_intrinsics", "IntrinsicsAdjustment", "INTRINSICS_FILE"]

INTRINSICS_FILE = "intrinsics.json"  # RUN/intrinsics.json: a run's learned corrections (fit --refine-intrinsics)
KEY_TOL = 1e-3  # relative tolerance under which two images' intrinsics count as one camera


def intrinsics_keys(cams: Cameras) -> Tensor:
    """Each image's (fx, fy, cx, cy) [N,4], pixels."""
    return torch.stack([cams.fx, cams.fy, cams.cx, cams.cy], -1).detach()


def adjust_intrinsics(cams: Cameras, delta: Tensor) -> Cameras:
    """`cams` with image i's intrinsics corrected by `delta[i]` = (s, a, b) [N,3] (differentiable in delta)."""
    d = delta.to(cams.c2w)
    scale = torch.exp(d[:, 0])
    return Cameras(cams.c2w, cams.fx * scale, cams.fy * scale, cams.cx + d[:, 1] * cams.fx, cams.cy + d[:, 2] * cams.fy,
                   cams.width, cams.height)


class IntrinsicsAdjustment(nn.Module):
    """One learnable (s, a, b) per distinct camera of the training images, starting at zero."""

    def __init__(self, keys: Tensor) -> None:
        """`keys`: the distinct cameras' (fx, fy, cx, cy) [G,4] (see `from_cameras`)."""
        super().__init__()
        self.register_buffer("keys", keys.detach().clone().float())
        self.delta = nn.Parameter(torch.zeros(keys.shape[0], 3))

    @classmethod
    def from_cameras(cls, cams: Cameras) -> IntrinsicsAdjustment:
        """One group per distinct intrinsics among `cams` (in order of first appearance)."""
        keys: list[Tensor] = []
        for k in intrinsics_keys(cams).cpu():
            if not keys or _difference(k[None], torch.stack(keys)).min() >= KEY_TOL:
                keys.append(k)
        return cls(torch.stack(keys))

    def group_of(self, cams: Cameras) -> Tensor:
        """Each image's group [N] (int64), -1 where its intrinsics match no group (no correction then)."""
        rel = _difference(intrinsics_keys(cams).to(self.keys), self.keys)  # [N,G]
        best = rel.argmin(1)
        return torch.where(rel.gather(1, best[:, None])[:, 0] < KEY_TOL, best, torch.full_like(best, -1))

    def forward(self, cams: Cameras) -> Cameras:
        """`cams` with each image's camera correction applied (differentiable in `delta`)."""
        group = self.group_of(cams)
        padded = torch.cat([self.delta, self.delta.new_zeros(1, 3)])  # row -1: unmatched images
        return adjust_intrinsics(cams, padded.index_select(0, torch.where(group < 0, len(self.delta), group)))

    @torch.no_grad()
    def corrected(self, dataset):
        """`dataset` (a data.Dataset, e.g. the held-out split) with its images' cameras corrected."""
        return dataclasses.replace(dataset, cameras=self(dataset.cameras))

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        """How far the intrinsics moved: focal change in % and principal-point shift in pixels, largest group."""
        focal = (torch.exp(self.delta[:, 0]) - 1).abs() * 100
        shift = (self.delta[:, 1:] * self.keys[:, :2]).norm(dim=1)
        return {"intrinsics_groups": int(len(self.delta)), "focal_change_pct_max": float(focal.max()),
                "principal_shift_px_max": float(shift.max())}

    def to_dict(self) -> dict[str, Any]:
        """JSON form: per camera its given (fx, fy, cx, cy) and the learned (s, a, b)."""
        return {"cameras": [{"fx_fy_cx_cy": k.tolist(), "log_focal_scale_shift_x_shift_y": d.tolist()}
                            for k, d in zip(self.keys.cpu(), self.delta.detach().cpu(), strict=True)]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntrinsicsAdjustment:
        """Inverse of `to_dict`."""
        cams = data["cameras"]
        adj = cls(torch.tensor([c["fx_fy_cx_cy"] for c in cams], dtype=torch.float32))
        with torch.no_grad():
            adj.delta.copy_(torch.tensor([c["log_focal_scale_shift_x_shift_y"] for c in cams]))
        return adj


def _difference(keys: Tensor, refs: Tensor) -> Tensor:
    """Largest relative difference [N,G] between intrinsics `keys` [N,4] and `refs` [G,4]."""
    return ((keys[:, None] - refs[None]).abs() / refs[None].abs().clamp_min(1.0)).amax(-1)
