"""Floaters (render/floaters.py): connected components of the density lattice, pruning the occupancy grid to
the object, and the share of rendered opacity outside the largest component — on fields whose specks are known."""

from __future__ import annotations

import torch

from vision3d_kd.cameras import cameras_from_spherical, image_rays
from vision3d_kd.fields.base import Field
from vision3d_kd.render.floaters import components, floater_share, lattice_density, prune_floaters
from vision3d_kd.render.occupancy import OccupancyGrid
from vision3d_kd.render.volume import RenderConfig, render_rays_chunked

SPECKS = ((0.75, 0.7, 0.6), (-0.7, 0.75, -0.65), (0.7, -0.75, -0.7))


class Balls(Field):
    """Opaque balls (density 100): `main` of radius 0.45 at the origin, specks of radius `speck` at SPECKS,
    a second ball `twin` of radius 0.2 at (0, -0.78, 0) when set (two cells apart), over a faint haze (density 0.05)."""

    name = "balls"

    def __init__(self, speck: float = 0.07, twin: bool = False) -> None:
        super().__init__(aabb=[[-1.0] * 3, [1.0] * 3])
        self.centres = [((0.0, 0.0, 0.0), 0.45)] + [(c, speck) for c in SPECKS]
        if twin:
            self.centres.append(((0.0, -0.78, 0.0), 0.2))

    def encode(self, x):
        return x

    def density_head(self, x):
        s = torch.full((x.shape[0],), 0.05)
        for c, r in self.centres:
            s = torch.where((x - torch.tensor(c)).norm(dim=-1) < r, torch.full_like(s, 100.0), s)
        return s, x

    def color_from_dirs(self, geo, d_enc):
        return torch.full((geo.shape[0], 3), 0.5)


def _setup(field: Field, res: int = 32):
    grid = OccupancyGrid(field.aabb, res)
    grid.update(field.density, 0.5, warmup=True, generator=torch.Generator().manual_seed(0))
    n = 6
    cams = cameras_from_spherical(torch.full((n,), 20.0), torch.arange(n) * 60.0, torch.full((n,), 3.5),
                                  torch.full((n,), 40.0), 48, 48)
    return grid, cams, RenderConfig(step_size=0.02)


def _opacity(field, grid, cams, settings) -> torch.Tensor:
    out = []
    for i in range(len(cams)):
        o, d = image_rays(cams, i)
        out.append(render_rays_chunked(field, o, d, grid, torch.ones(len(o), 3), settings)["opacity"])
    return torch.stack(out)


def test_components_find_the_object_and_its_specks() -> None:
    field = Balls()
    grid, _, _ = _setup(field)
    density = lattice_density(field, grid, 32)
    keep, stats = components(density, 10.0)
    assert stats["components"] == 4 and stats["kept"] == 1
    assert 0.0 < stats["mass_share_outside"] < 0.05
    assert keep[16, 16, 16] and not keep[28, 27, 25]  # the centre is kept, the first speck is not


def test_pruning_removes_specks_and_keeps_the_object() -> None:
    field = Balls()
    grid, cams, settings = _setup(field)
    before = floater_share(field, grid, cams, settings)
    full = _opacity(field, grid, cams, settings)
    stats = prune_floaters(field, grid, settings.step_size)
    after = floater_share(field, grid, cams, settings)
    pruned = _opacity(field, grid, cams, settings)
    alone = Balls(speck=0.0)  # the truth without specks
    truth = _opacity(alone, _setup(alone)[0], cams, settings)
    assert before > 0.01 and after < 0.001, (before, after)
    assert stats["components"] == 4 and stats["kept"] == 1 and stats["cells_cleared"] > 0
    assert (pruned - truth).abs().max() < 0.02  # the object itself is untouched
    assert (full - truth).abs().max() > 0.5  # and the specks were visible before


def test_a_second_large_part_is_kept() -> None:
    field = Balls(twin=True)
    grid, cams, settings = _setup(field)
    stats = prune_floaters(field, grid, settings.step_size, keep_ratio=0.05)
    assert stats["kept"] == 2  # the ball and its twin (mass ~9 %), not the specks
    twin = (torch.tensor([0.0, -0.78, 0.0]), torch.tensor([0.0, 0.0, 0.0]))
    assert grid.occupied(torch.stack(twin)).all()
    assert not grid.occupied(torch.tensor([SPECKS[0]])).any()
    assert floater_share(field, grid, cams, settings) > 0.02  # the metric counts all but the largest


def test_each_box_of_a_layout_is_pruned_against_its_own_largest_part() -> None:
    # a big ball (left box) and a small one (right box, ~1 % of its mass) with a speck beside the small one:
    # pruned as one scene the small ball is a floater; per box it is its box's object and only the speck goes
    field = Balls(speck=0.0)
    field.centres = [((-0.5, 0.0, 0.0), 0.4), ((0.55, 0.0, 0.0), 0.1), ((0.85, 0.4, 0.4), 0.04)]
    boxes = torch.tensor([[-1.0, -1.0, -1.0, 0.0, 1.0, 1.0], [0.0, -1.0, -1.0, 1.0, 1.0, 1.0]])
    small, speck = torch.tensor([[0.55, 0.0, 0.0]]), torch.tensor([[0.85, 0.4, 0.4]])
    grid, _, settings = _setup(field, 48)
    prune_floaters(field, grid, settings.step_size)
    assert not grid.occupied(small).any()  # the whole-scene rule takes the small object for a floater
    grid, _, settings = _setup(field, 48)
    stats = prune_floaters(field, grid, settings.step_size, boxes=boxes)
    assert stats["components"] == 3 and stats["kept"] == 2
    assert grid.occupied(small).all() and grid.occupied(torch.tensor([[-0.5, 0.0, 0.0]])).all()
    assert not grid.occupied(speck).any()


def test_a_part_near_the_main_body_is_kept_by_the_gap_rule() -> None:
    # a ball and a piece split off it by a thin gap (a table's leg cut at a neck), ~2 % of its mass
    field = Balls(speck=0.0)
    field.centres = [((0.0, 0.0, 0.0), 0.45), ((0.0, 0.0, -0.62), 0.12)]
    box = torch.tensor([[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]])
    piece = torch.tensor([[0.0, 0.0, -0.62]])
    for gap, kept in ((0.0, False), (0.1, True)):
        grid, _, settings = _setup(field, 48)
        prune_floaters(field, grid, settings.step_size, boxes=box, box_gaps=[gap])
        assert bool(grid.occupied(piece).all()) is kept, gap
