"""LucidDreaming's object-centric blobs (`fields/blob.py` with boxes): each box's own ellipsoid, and with
`scale_box_density` the same optical depth through every object's centre whatever its box's size."""

from __future__ import annotations

import pytest
import torch

from vision3d_kd.fields import build_field

INNER = {"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 2, "log2_table_size": 8,
         "max_resolution": 16, "init_scale": 0.0}
BOXES = [[-1.5, -0.5, -0.5, -0.5, 0.5, 0.5],  # a cube of side 1: scale 0.5
         [1.0, -0.2, -0.2, 1.4, 0.2, 0.2]]  # a cube of side 0.4: scale 0.2


def _depth_through_centre(field, box) -> float:
    """∫ max(b, 0) dx along the x line through the box's centre, over the box (world units)."""
    lo, hi = box[0], box[3]
    x = torch.linspace(lo, hi, 4001)
    pts = torch.stack([x, torch.full_like(x, 0.5 * (box[1] + box[4])), torch.full_like(x, 0.5 * (box[2] + box[5]))], 1)
    with torch.no_grad():
        b = field.bias(pts).clamp_min(0)
    return float(torch.trapezoid(b, x))


@pytest.mark.parametrize("scaled", [False, True])
def test_box_blob_peaks_and_depths(scaled):
    f = build_field({"field": "blob", "inner": INNER, "boxes": BOXES, "blob_density": 10.0, "blob_radius": 0.5,
                     "scale_box_density": scaled})
    centres = torch.tensor([[-1.0, 0.0, 0.0], [1.2, 0.0, 0.0]])  # the boxes' centres
    with torch.no_grad():
        peaks = f.bias(centres)
    scales = torch.tensor([0.5, 0.2])
    want = 10.0 / scales if scaled else torch.full((2,), 10.0)
    assert torch.allclose(peaks, want, rtol=1e-5)
    big, small = (_depth_through_centre(f, b) for b in BOXES)
    # the blob's semi-axis is a = 0.625 · 0.5 · side = 0.625 s; the positive part of the cone holds λ_k · a
    if scaled:  # λ_k = 10 / s: 6.25 through every object, whatever its size
        assert big == pytest.approx(6.25, rel=1e-3) and small == pytest.approx(6.25, rel=1e-3)
    else:  # λ = 10: the small object's blob is s times thinner (0.625 · 10 · s)
        assert big == pytest.approx(3.125, rel=1e-3) and small == pytest.approx(1.25, rel=1e-3)


def test_scaled_box_density_is_off_by_default_and_saved_in_the_config():
    f = build_field({"field": "blob", "inner": INNER, "boxes": BOXES})
    assert f.config.scale_box_density is False and f.box_peak is None
    g = build_field({"field": "blob", "inner": INNER, "boxes": BOXES, "scale_box_density": True})
    assert build_field(g.to_dict()).box_peak is not None
