"""Which box a point is in: `fields.base.points_in_boxes` (box tables, empty_outside, per-box pruning) against
the [N, K, 3] broadcast it replaced, and `fields.hashgrid.by_table` (rows grouped per table and put back)
against a row-by-row loop, values and gradients."""

from __future__ import annotations

import pytest
import torch

from vision3d_kd.fields.base import points_in_boxes
from vision3d_kd.fields.hashgrid import by_table


def _oracle(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    return ((x[:, None] >= boxes[None, :, :3]) & (x[:, None] <= boxes[None, :, 3:])).all(dim=-1)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_points_in_boxes_matches_the_broadcast(k):
    g = torch.Generator().manual_seed(k)
    lo = torch.rand(k, 3, generator=g) * 1.2 - 1.0
    boxes = torch.cat([lo, lo + 0.1 + torch.rand(k, 3, generator=g)], dim=1)
    x = torch.rand(5000, 3, generator=g) * 2.4 - 1.2
    x[:k] = boxes[:, :3]  # a corner of each box: faces count as inside
    x[k:2 * k] = boxes[:, 3:]
    got = points_in_boxes(x, boxes)
    assert got.shape == (5000, k) and got.dtype == torch.bool
    assert torch.equal(got, _oracle(x, boxes))
    assert got[torch.arange(k), torch.arange(k)].all() and got[k + torch.arange(k), torch.arange(k)].all()
    assert 0 < got.sum() < got.numel()


def test_points_in_boxes_edge_shapes():
    boxes = torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]], dtype=torch.float64)  # cast to the points' dtype
    assert points_in_boxes(torch.zeros(0, 3), boxes).shape == (0, 1)
    assert points_in_boxes(torch.zeros(4, 3), torch.zeros(0, 6)).shape == (4, 0)
    x = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 1.0 + 1e-6], [float("nan"), 0.5, 0.5]])
    assert points_in_boxes(x, boxes).reshape(-1).tolist() == [True, False, False]


def test_by_table_puts_each_tables_rows_back_in_order_with_their_gradients():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 4, (300,), generator=g)
    idx[idx == 3] = 2  # table 3 holds no row: skipped
    w = torch.randn(4, 3, 5, generator=g, requires_grad=True)  # one linear map per table
    inp = torch.randn(300, 3, generator=g, requires_grad=True)
    out = by_table(idx, 4, inp, lambda k, rows: rows @ w[k])
    want = torch.stack([inp[i] @ w[int(idx[i])] for i in range(300)])
    assert torch.allclose(out, want, atol=1e-6)
    up = torch.randn(300, 5, generator=g)
    grads = torch.autograd.grad((out * up).sum(), (inp, w))
    wants = torch.autograd.grad((want * up).sum(), (inp, w))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, wants, strict=True))
    assert (grads[1][3] == 0).all() and (grads[1][:3] != 0).all()
    same = by_table(torch.full((7,), 2), 4, inp[:7], lambda k, rows: rows @ w[k])  # one table: one call
    assert torch.allclose(same, inp[:7] @ w[2])
    assert by_table(idx[:0], 4, inp[:0], lambda k, rows: rows @ w[k]).shape == (0, 5)


@pytest.mark.parametrize("one_box", [False, True])
def test_a_layout_field_computes_box_membership_once_with_the_same_results(one_box):
    """A blob over box tables on the same boxes asks `points_in_boxes` once per evaluation (box tables and
    empty_outside share it) and its density, forward and gradients equal those of the field computing it
    twice; with every point in one box (clipped rays) the encoding writes the one-hot beside the features."""
    from vision3d_kd.fields import base, blob, build_field, hashgrid

    boxes = [[-0.9, -0.5, -0.5, -0.1, 0.5, 0.5], [0.1, -0.5, -0.5, 0.9, 0.5, 0.5]]
    inner = {"field": "hashgrid", "aabb": [[-1.0] * 3, [1.0] * 3], "n_levels": 4, "log2_table_size": 10,
             "max_resolution": 64, "box_tables": boxes, "box_heads": True}
    torch.manual_seed(0)
    f = build_field({"field": "blob", "inner": inner, "boxes": boxes, "empty_outside": True})
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3000, 3, generator=g) * 2 - 1
    if one_box:
        x = x * 0.3 + torch.tensor([0.5, 0.0, 0.0])
    d = torch.nn.functional.normalize(torch.randn(3000, 3, generator=g), dim=-1)
    calls = []
    real = base.points_in_boxes

    def counted(*a):
        calls.append(1)
        return real(*a)

    results = []
    for share in (True, False):
        f.share_inside = share
        f.zero_grad()
        calls.clear()
        with pytest.MonkeyPatch.context() as mp:
            for mod in (blob, hashgrid):
                mp.setattr(mod, "points_in_boxes", counted)
            sigma, rgb = f(x, d)
            n_calls = len(calls)
            dens = f.density(x)
        (sigma.sum() + rgb.sum() + dens.sum()).backward()
        results.append((sigma, rgb, dens, [p.grad.clone() for p in f.parameters() if p.grad is not None], n_calls))
    (s1, c1, d1, g1, n1), (s2, c2, d2, g2, n2) = results
    assert (n1, n2) == (1, 2)
    assert torch.equal(s1, s2) and torch.equal(c1, c2) and torch.equal(d1, d2)
    assert len(g1) == len(g2) and all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))
    feat = f.inner.encode(x)
    idx = f.inner.table_index(x)
    assert torch.equal(feat[:, -3:], torch.nn.functional.one_hot(idx, 3).float())
    assert bool((idx == 2).all()) == one_box
