"""Scene contraction: the map and its inverse, contracted fields and occupancy grids, the contracted
sampler, and an end-to-end fit of an unbounded scene that a bounded field cannot represent."""

from __future__ import annotations

import math

import pytest
import torch

from vision3d_kd.cameras import cameras_from_spherical, image_rays
from vision3d_kd.data.dataset import Dataset
from vision3d_kd.fields import build_field
from vision3d_kd.fields.contraction import contract, uncontract
from vision3d_kd.kernels.march import march_rays
from vision3d_kd.render.contracted import FAR_RATIO
from vision3d_kd.render.occupancy import OccupancyGrid
from vision3d_kd.render.sampling import sample_along_rays
from vision3d_kd.train.config import apply_overrides, load_fit_config
from vision3d_kd.train.fit import fit

BOX = torch.tensor([[-1.0, -2.0, -0.5], [3.0, 2.0, 1.5]])  # centre (1, 0, 0.5), half-size (2, 2, 1)
CUBE = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------------- the map
def test_contract_values_round_trip_and_limits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g, dtype=torch.float64) * torch.logspace(-1, 4, 2000)[:, None]
    c = contract(x, BOX.double())
    assert c.abs().max() < 2.0
    assert torch.allclose(uncontract(c, BOX.double()), x, rtol=1e-9, atol=1e-12)  # exact inverse
    x32 = x.float()[:1000]  # |x| <~ 100: float32 keeps 1e-4 (2 - 1/|u| loses digits as |u| grows)
    assert torch.allclose(uncontract(contract(x32, BOX), BOX), x32, rtol=1e-4, atol=1e-5)
    inside = torch.tensor([[0.0, 1.0, 0.0], [2.9, -1.9, 1.4]])
    assert torch.allclose(contract(inside, BOX), (inside - BOX.mean(0)) / torch.tensor([2.0, 2.0, 1.0]))
    # continuous across the box surface, L-infinity shells: a point at |u|_inf = 3 sits at |c|_inf = 2 - 1/3
    surface = torch.tensor([[3.0, 0.3, 0.9]])  # u = (1, 0.15, 0.4)
    eps = torch.tensor([[1e-4, 0.0, 0.0]])
    assert torch.allclose(contract(surface - eps, BOX), contract(surface + eps, BOX), atol=1e-4)
    far = torch.tensor([[7.0, 0.0, 0.5]])  # u = (3, 0, 0)
    assert torch.allclose(contract(far, BOX), torch.tensor([[2.0 - 1.0 / 3.0, 0.0, 0.0]]))
    huge = torch.tensor([[1e12, -3e11, 0.0]])
    assert torch.allclose(contract(huge, BOX).abs().amax(), torch.tensor(2.0))
    # the outer face uncontracts to a finite point, and gradients are finite everywhere (also at u = 0)
    assert torch.isfinite(uncontract(torch.tensor([[2.0, 0.0, -2.0]]), BOX)).all()
    pts = torch.tensor([[1.0, 0.0, 0.5], [100.0, 3.0, 0.0]], requires_grad=True)
    contract(pts, BOX).sum().backward()
    assert torch.isfinite(pts.grad).all()


# ----------------------------------------------------------------------------------- fields
@pytest.mark.parametrize("name", ["hashgrid", "grid", "tensorf-vm", "tensorf-cp"])
def test_contracted_field_config_round_trip_and_old_dicts(name):
    small = {"hashgrid": {"log2_table_size": 10, "max_resolution": 64}, "grid": {"resolution": 8},
             "tensorf-vm": {"resolution": 8}, "tensorf-cp": {"resolution": 8}}[name]
    f = build_field({"field": name, "aabb": CUBE.tolist(), "contract": True, **small})
    assert f.contract and f.to_dict()["contract"] is True
    g = build_field(f.to_dict())
    assert g.contract and g.to_dict() == f.to_dict()
    old = {k: v for k, v in f.to_dict().items() if k != "contract"}
    assert build_field(old).contract is False
    # the whole of space is representable: points far outside the box get distinct encodings
    x = torch.tensor([[5.0, 0.0, 0.0], [50.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    n = f.normalize(x)
    assert torch.allclose(n[:2, 0], torch.tensor([0.95, 0.995]))  # (2 - 1/|u| + 2) / 4
    assert torch.allclose(n[2], torch.tensor([0.625, 0.5, 0.5]))  # the box is the inner [0.25, 0.75]^3
    assert torch.isfinite(f.density(x)).all()


# ----------------------------------------------------------------------------------- occupancy grid
def test_contracted_grid_cells_points_and_state():
    grid = OccupancyGrid(BOX, 16, contract=True)
    g = torch.Generator().manual_seed(0)
    cells = torch.randint(0, 16**3, (4000,), generator=g)
    pts = grid.cell_points(cells, g)
    assert torch.equal(grid.cell_index(pts)[0], cells)
    assert torch.equal(grid.cell_index(grid.cell_centres())[0], torch.arange(16**3))
    assert pts.abs().max() > 50  # the outer cells lie far out in world space
    # inner cells are the box's: the kernel view of the grid agrees with it inside the box
    inside = BOX[0] + torch.rand(3000, 3, generator=g) * (BOX[1] - BOX[0])
    grid.binary.copy_(torch.rand(16**3, generator=g) > 0.5)
    from vision3d_kd.kernels.march_ref import cell_index

    m = grid.mask()
    assert torch.equal(m.binary[cell_index(m.aabb, m.resolution, inside)[0]], grid.occupied(inside))
    # the flag is saved; states saved before it existed load into a bounded grid
    state = grid.state_dict()
    assert bool(state["contracted"])
    with pytest.raises(RuntimeError):
        OccupancyGrid(BOX, 16).load_state_dict(state)
    old = {k: v for k, v in OccupancyGrid(BOX, 16).state_dict().items() if k != "contracted"}
    OccupancyGrid(BOX, 16).load_state_dict(old)


# ----------------------------------------------------------------------------------- sampler
def test_bounded_path_unchanged_when_contract_is_off():
    g = torch.Generator().manual_seed(1)
    o = torch.randn(300, 3, generator=g) * 0.5
    d = _unit(torch.randn(300, 3, generator=g))
    grid = OccupancyGrid(CUBE, 16)
    grid.binary.copy_(torch.rand(16**3, generator=g) > 0.3)
    s = sample_along_rays(o, d, CUBE, 0.03, grid, jitter=True, generator=torch.Generator().manual_seed(5))
    ri, ts, te = march_rays(o, d, CUBE, 0.03, grid.mask(), 0.0, True, torch.Generator().manual_seed(5))
    assert torch.equal(s.ray_indices, ri) and torch.equal(s.t_starts, ts) and torch.equal(s.t_ends, te)
    with pytest.raises(ValueError):
        sample_along_rays(o, d, CUBE, 0.03, grid, contract=True)


def _per_ray(s, r):
    m = s.ray_indices == r
    return s.t_starts[m].double(), s.t_ends[m].double()


def _check_contiguous(s, n_rays):
    assert torch.all(s.ray_indices[1:] >= s.ray_indices[:-1])
    for r in range(n_rays):
        ts, te = _per_ray(s, r)
        assert torch.all(te > ts)
        assert torch.allclose(ts[1:], te[:-1], rtol=1e-5, atol=1e-5), r


@pytest.mark.parametrize("jitter", [False, True])
def test_contracted_samples_from_the_box_centre(jitter):
    step = 0.02
    g = torch.Generator().manual_seed(2)
    d = _unit(torch.randn(64, 3, generator=g))
    o = torch.zeros(64, 3)
    s = sample_along_rays(o, d, CUBE, step, contract=True, jitter=jitter, generator=g)
    _check_contiguous(s, 64)
    t_exit = 1.0 / d.abs().amax(dim=-1)
    for r in range(64):
        ts, te = _per_ray(s, r)
        fg = te <= t_exit[r] + 1e-5
        lengths = (te - ts)[fg]
        assert torch.allclose(lengths[1:-1], torch.full_like(lengths[1:-1], step), atol=1e-5)  # fg spacing = step
        bg_disp = 1.0 / torch.cat([ts[~fg], te[~fg][-1:]])  # from the centre: uniform in 1/t
        diffs = bg_disp.diff()[1:-1]
        assert torch.allclose(diffs, diffs.mean().expand_as(diffs), rtol=1e-3)
        assert diffs.mean().abs() * t_exit[r] == pytest.approx(step, rel=0.01)  # contracted step = fg's
        assert te[-1] == pytest.approx(FAR_RATIO * t_exit[r].item(), rel=1e-4)
        if not jitter:
            assert ts[0] == 0.0


def test_contracted_samples_from_outside_and_missing_rays():
    step = 0.05
    o = torch.tensor([[4.0, 0.1, 0.2], [4.0, 3.0, 0.0], [0.0, 0.0, 30.0], [0.3, 0.2, 0.1]])
    d = _unit(torch.tensor([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.1, 0.0, -1.0], [0.2, 0.5, -0.4]]))
    s = sample_along_rays(o, d, CUBE, step, contract=True)
    _check_contiguous(s, 4)
    ts, te = _per_ray(s, 0)  # from outside through the box: [0, 3] shells, [3, 5] steps, then shells again
    assert ts[0] == 0.0
    steps = (ts >= 3.0 - 1e-5) & (te <= 5.0 + 1e-5)
    assert int(steps.sum()) == 40 and torch.allclose(te[steps] - ts[steps], torch.tensor(step, dtype=torch.float64))
    pre = ts < 3.0 - 1e-5
    # before the box: crossings of shells rho = |x| (centre at the origin), 1/rho uniform
    disp = 1.0 / torch.cat([ts[pre][1:], te[pre][-1:]]).sub(4.0).neg()
    diffs = disp.diff()[1:-1]
    assert torch.allclose(diffs, diffs.mean().expand_as(diffs), rtol=2e-3) and diffs.mean() == pytest.approx(step, 0.01)
    for r in (1, 2):  # rays missing the box: shells only, from the camera to the far shell
        ts, te = _per_ray(s, r)
        assert ts[0] == 0.0 and len(ts) > 10
        far = contract((o[r] + d[r] * te[-1].float())[None], CUBE).abs().amax()
        assert far > 2.0 - 2.0 / FAR_RATIO
    mids = s.points
    grid = OccupancyGrid(CUBE, 32, contract=True)
    grid.binary.copy_(torch.rand(32**3, generator=torch.Generator().manual_seed(3)) > 0.5)
    kept = sample_along_rays(o, d, CUBE, step, grid)
    assert grid.occupied(kept.points).all()
    dropped = ~grid.occupied(mids)
    assert len(kept) == int((~dropped).sum())


# ----------------------------------------------------------------------------------- end to end
FG_RADIUS, FAR_RADIUS, CAM_RADIUS = 0.5, 20.0, 2.0
FG_BOX = torch.tensor([[-0.6, -0.6, -0.6], [0.6, 0.6, 0.6]])


def _sky(dirs: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.4 * torch.sin(torch.stack([3.0 * dirs[:, 0], 4.0 * dirs[:, 1] + 1.0, 5.0 * dirs[:, 2] + 2.0], -1))


def _unbounded_scene(n: int, seed: int) -> Dataset:
    """A coloured ball (radius 0.5) at the origin inside a sphere of radius 20 painted with a smooth
    pattern, seen from cameras at radius 2 (outside the foreground box [-0.6,0.6]^3; most rays miss it),
    32x32, 90 degrees, ray-traced."""
    g = torch.Generator().manual_seed(seed)
    cams = cameras_from_spherical(torch.rand(n, generator=g) * 60 - 30, torch.rand(n, generator=g) * 360,
                                  torch.full((n,), CAM_RADIUS), torch.full((n,), 90.0), 32, 32)
    images = []
    for i in range(n):
        o, d = image_rays(cams, i)
        b = (o * d).sum(-1)
        disc_fg = b**2 - (o * o).sum(-1) + FG_RADIUS**2
        t_fg = -b - disc_fg.clamp_min(0).sqrt()
        hit = (disc_fg > 0) & (t_fg > 0)
        t_far = -b + (b**2 - (o * o).sum(-1) + FAR_RADIUS**2).sqrt()
        normal = _unit(o + d * t_fg[:, None])
        far_dir = _unit(o + d * t_far[:, None])
        rgb = torch.where(hit[:, None], 0.5 + 0.45 * normal, _sky(far_dir))
        images.append(rgb.reshape(32, 32, 3))
    rgb = torch.stack(images).float()
    return Dataset(rgb=rgb, opacity=torch.ones(n, 32, 32, 1), cameras=cams, aabb=FG_BOX.clone())


FIT = ["field.n_levels=8", "field.log2_table_size=14", "field.max_resolution=256", "field.base_resolution=8",
       "train.batch_rays=1024", "train.target_samples=0", "train.step_size=0.04", "train.occ_resolution=32",
       "train.occ_warmup_steps=64", "train.checkpoint_every=100000", "train.max_seconds=0", "train.steps=200",
       "train.lr=0.02", "train.eval_chunk=4096"]


def test_fit_unbounded_scene_needs_contraction(tmp_path):
    train, test = _unbounded_scene(32, seed=0), _unbounded_scene(3, seed=1)
    psnr = {}
    for contracted in (True, False):
        cfg = apply_overrides(load_fit_config("hashgrid"), FIT + [f"field.contract={str(contracted).lower()}"])
        m = fit(train, test, tmp_path / str(contracted), cfg, show_progress=False)
        psnr[contracted] = m["psnr_test"]
    # measured: contracted 18.2 dB, bounded 4.2 dB (rays that miss the box show the background)
    assert psnr[True] > 16.0, psnr
    assert math.isfinite(psnr[False]) and psnr[False] < 10.0, psnr
