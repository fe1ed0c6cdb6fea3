"""Gaps closed (generation/bridge.py): the bridge found on a lattice joins only nearby parts, and the fine-tune
joins a stem to its cap without moving the rest — on a field whose gap is known."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vision3d_kd.cameras import cameras_from_spherical
from vision3d_kd.fields.base import Field
from vision3d_kd.generation.bridge import bridge_mask, close_gaps
from vision3d_kd.render.floaters import FLOATER_OPACITY, components, floater_share, lattice_density
from vision3d_kd.render.occupancy import OccupancyGrid, density_for_opacity
from vision3d_kd.render.volume import RenderConfig


def _box(shape, lo, hi) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def test_bridge_fills_the_gap_between_near_parts_only() -> None:
    shape = (40, 40, 40)
    main = _box(shape, (5, 5, 20), (35, 35, 30))
    leg = _box(shape, (8, 8, 5), (12, 12, 17))  # 3 empty cells below the slab
    far = _box(shape, (28, 28, 2), (32, 32, 8))  # 12 cells away
    density = np.where(main | leg | far, 10.0, 0.0)
    bridge, gaps = bridge_mask(density, 1.0, 0.1, max_gap=0.5)
    assert gaps == [0.3]  # the leg, in scene units; the far block is beyond max_gap
    filled = bridge[8:12, 8:12, 17:20]
    assert filled.mean() > 0.9  # the gap under the leg is filled ...
    assert not bridge[:, :, :17].any() and not bridge[:, :, 20:].any()  # ... and nothing else
    assert not bridge[13:, 13:].any()
    assert bridge_mask(density, 1.0, 0.1, max_gap=0.2)[1] == []  # a wider gap than allowed: left alone
    assert bridge_mask(density, 1.0, 0.1, max_gap=0.5, min_share=0.5)[1] == []  # a part too small to join


def test_bridge_leaves_one_concave_part_alone() -> None:
    shape = (30, 30, 30)
    ell = _box(shape, (5, 5, 5), (25, 10, 10)) | _box(shape, (5, 5, 5), (10, 25, 10))  # an L: one component
    bridge, gaps = bridge_mask(np.where(ell, 5.0, 0.0), 1.0, 0.1, max_gap=0.5)
    assert gaps == [] and not bridge.any()


class Mushroom(Field):
    """A cap (ball of radius 0.4, red) over a stem (z in [-0.9, -0.47], radius 0.12, red) with a 0.07 gap
    between them, over blue empty space; learnable 48³ grids add density (softplus, starts at 0.02) and
    colour, so a fine-tune can change both anywhere."""

    name = "mushroom_test"

    def __init__(self) -> None:
        super().__init__(aabb=[[-1.0] * 3, [1.0] * 3])
        self.sig = torch.nn.Parameter(torch.full((1, 1, 48, 48, 48), -4.0))
        self.col = torch.nn.Parameter(torch.zeros((1, 3, 48, 48, 48)))

    def encode(self, x):
        return x

    def _solid(self, x):
        cap = x.norm(dim=-1) < 0.4
        stem = (x[:, :2].norm(dim=-1) < 0.12) & (x[:, 2] > -0.9) & (x[:, 2] < -0.47)
        return cap | stem

    def _extra(self, x):
        g = F.grid_sample(torch.cat([self.sig, self.col], 1), x.flip(-1).reshape(1, -1, 1, 1, 3), align_corners=True)
        return g.reshape(4, -1).t()

    def density_head(self, x):
        e = self._extra(x)
        return torch.where(self._solid(x), 100.0, 0.0) + F.softplus(e[:, 0]), torch.cat([x, e[:, 1:]], -1)

    def color_from_dirs(self, geo, d_enc):
        x, e = geo[:, :3], geo[:, 3:]
        base = torch.where(self._solid(x)[:, None], torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.9]))
        return (base + e).clamp(0.0, 1.0)


def test_close_gaps_joins_the_stem_and_keeps_the_rest() -> None:
    torch.manual_seed(0)
    field = Mushroom()
    grid = OccupancyGrid(field.aabb, 32)
    grid.update(field.density, 0.5, warmup=True, generator=torch.Generator().manual_seed(0))
    settings = RenderConfig(step_size=0.02)
    cams = cameras_from_spherical(torch.full((4,), 0.0), torch.arange(4) * 90.0, torch.full((4,), 3.5),
                                  torch.full((4,), 40.0), 40, 40)
    level = density_for_opacity(FLOATER_OPACITY, settings.step_size)
    assert components(lattice_density(field, grid, 64), level)[1]["components"] == 2
    before = floater_share(field, grid, cams, settings)
    probe = torch.tensor([[0.3, 0.3, 0.0], [0.0, 0.0, 0.2], [0.0, 0.0, -0.7], [0.7, 0.7, 0.7]])
    held = field(probe)
    info = close_gaps(field, grid, settings.step_size, max_gap=0.1, steps=300, lr=0.05)
    assert info["gaps_closed"] == 1 and 0.03 < info["gap_sizes"][0] < 0.1, info
    assert components(lattice_density(field, grid, 64), level)[1]["components"] == 1
    after = floater_share(field, grid, cams, settings)
    assert before > 0.02 and after < 0.002, (before, after)
    sigma, rgb = field(torch.tensor([[0.0, 0.0, -0.435]]))  # the middle of the gap
    assert sigma.item() > level and rgb[0, 0] > 0.5 > rgb[0, 2]  # solid now, and red like its neighbours
    now = field(probe)
    assert torch.allclose(now[0], held[0], rtol=0.05, atol=0.05)  # the rest kept its density and colour
    assert (now[1] - held[1]).abs().max() < 0.05
    assert grid.occupied(torch.tensor([[0.0, 0.0, -0.435]])).all()
    assert close_gaps(field, grid, settings.step_size, max_gap=0.1)["gaps_closed"] == 0  # nothing left to join
