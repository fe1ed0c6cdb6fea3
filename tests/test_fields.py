"""vision3d_kd.fields: the Field contract for every family, configs, schedules; encodings: test_encodings.py."""

from __future__ import annotations

import json

import pytest
import torch

from vision3d_kd.errors import ConfigError
from vision3d_kd.fields import (
    FIELDS,
    BlobField,
    Field,
    GaussianSplats,
    HashGridConfig,
    HashGridField,
    SplatsConfig,
    TensoRFCPConfig,
    TensoRFVM,
    VoxelGridConfig,
    VoxelGridField,
    build_field,
)

AABB = [[-1.0, -0.5, -2.0], [1.0, 1.5, 0.5]]  # not a cube, to catch axis mix-ups
TINY = {
    "mlp": dict(xyz_freqs=4, width=32, depth=3, skip=2, geo_features=8, color_hidden=16),
    "hashgrid": dict(
        n_levels=4,
        log2_table_size=10,
        base_resolution=4,
        max_resolution=32,
        init_scale=0.1,
        hidden=16,
        geo_features=7,
        color_hidden=16,
    ),
    "tensorf-vm": dict(resolution=4, upsample=[[5, 24]], n_density=4, n_app=6, geo_features=8, color_hidden=16),
    "tensorf-cp": dict(resolution=4, upsample=[[5, 32]], n_density=8, n_app=12, geo_features=8, color_hidden=16),
    "grid": dict(resolution=4, upsample=[[5, 24]], geo_features=4, color_hidden=16, feature_init_scale=0.1),
}
UPSAMPLING = ["tensorf-vm", "tensorf-cp", "grid"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: on a shared 2-core machine, a second intra-op thread makes these tests far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(name: str, **over) -> Field:
    torch.manual_seed(0)
    return build_field({"field": name, "aabb": AABB, **TINY[name], **over})


def points(n: int, seed: int = 1, margin: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random world positions (a few slightly outside the box) and unit directions."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(AABB[0]), torch.tensor(AABB[1])
    u = torch.rand(n, 3, generator=g) * (1 + 2 * margin) - margin
    d = torch.randn(n, 3, generator=g)
    return lo + u * (hi - lo), d / d.norm(dim=-1, keepdim=True)


def perturb(field: Field, scale: float = 0.3) -> None:
    """Give every parameter random (non-zero) content so the tests are not trivially satisfied."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in field.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_table_names_match_classes():
    assert set(FIELDS) == {"mlp", "hashgrid", "tensorf-vm", "tensorf-cp", "grid"}
    for name, cls in FIELDS.items():
        assert cls.name == name


@pytest.mark.parametrize("name", list(FIELDS))
def test_forward_shapes_and_ranges(name):
    field = make(name)
    x, d = points(257)
    sigma, rgb = field(x, d)
    assert sigma.shape == (257,) and rgb.shape == (257, 3)
    assert sigma.dtype == torch.float32 and rgb.dtype == torch.float32
    assert torch.isfinite(sigma).all() and torch.isfinite(rgb).all()
    assert (sigma >= 0).all()
    assert (rgb >= 0).all() and (rgb <= 1).all()
    assert field.aabb.shape == (2, 3) and "aabb" in dict(field.named_buffers())
    n = field.normalize(x)
    assert (n >= 0).all() and (n <= 1).all()
    sigma0, rgb0 = field(x)  # no direction: a fixed canonical one
    assert torch.equal(sigma0, sigma) and rgb0.shape == (257, 3)


@pytest.mark.parametrize("name", list(FIELDS))
def test_gradients_reach_every_parameter(name):
    field = make(name)
    x, d = points(512)
    sigma, rgb = field(x, d)
    loss = ((sigma - 1.0) ** 2).mean() + ((rgb - 0.3) ** 2).mean() + field.regularization()
    loss.backward()
    for pname, p in field.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(FIELDS))
def test_stages_compose_to_forward(name):
    field = make(name)
    perturb(field, 0.05)
    x, d = points(300)
    with torch.no_grad():
        sigma, rgb = field(x, d)
        feat = field.encode(x)
        s2, geo = field.density_head(feat)
        rgb2 = field.color_head(geo, d)
        dens = field.density(x)
    assert feat.dim() == 2 and feat.shape[0] == 300
    assert geo.dim() == 2 and geo.shape[0] == 300
    torch.testing.assert_close(s2, sigma, rtol=0, atol=0)
    torch.testing.assert_close(rgb2, rgb, rtol=0, atol=0)
    torch.testing.assert_close(dens, sigma, rtol=1e-6, atol=1e-7)
    # Packed per-ray evaluation (directions encoded once per ray) matches per-sample forward.
    rays_d = d[:20]
    ray_i = torch.randint(0, 20, (300,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        s3, rgb3 = field.forward_rays(x, rays_d, ray_i)
        s4, rgb4 = field(x, rays_d[ray_i])
    torch.testing.assert_close(s3, s4)
    torch.testing.assert_close(rgb3, rgb4)


@pytest.mark.parametrize("name", list(FIELDS))
def test_log_density_block_matches_density(name):
    """The block contract: log_density_head gives log(sigma) and the same geo features, and stays finite
    where sigma underflows to 0 or is huge."""
    field = make(name)
    perturb(field, 0.05)
    x, _ = points(300)
    with torch.no_grad():
        feat = field.encode(x)
        sigma, geo = field.density_head(feat)
        log_sigma, geo2 = field.log_density_head(feat)
    torch.testing.assert_close(geo2, geo, rtol=0, atol=0)
    ok = sigma > 1e-30
    torch.testing.assert_close(log_sigma[ok], sigma[ok].log(), rtol=1e-4, atol=1e-4)
    extreme = torch.cat([feat * 0 - 300.0, feat * 0 + 60.0]).requires_grad_(True)
    log_extreme, _ = field.log_density_head(extreme)
    log_extreme.sum().backward()
    assert torch.isfinite(log_extreme).all() and torch.isfinite(extreme.grad).all()


@pytest.mark.parametrize("name", list(FIELDS))
def test_shared_color_head_design(name):
    """Every family ends in the same colour head (PVD copies it between families)."""
    field = make(name, geo_features=15)
    ref = make("hashgrid", geo_features=field.geo_features, color_hidden=16)
    shapes = [p.shape for p in field.color_net.parameters()]
    assert shapes == [p.shape for p in ref.color_net.parameters()]
    assert field.encode_dirs(torch.eye(3)).shape == (3, 16)


@pytest.mark.parametrize("name", list(FIELDS))
def test_config_json_round_trip(name):
    field = make(name)
    perturb(field, 0.05)
    field.on_step(10**6)  # grow first where there is a schedule: the config must follow
    cfg = json.loads(json.dumps(field.to_dict()))
    assert cfg["field"] == name and cfg["aabb"] == AABB
    torch.manual_seed(123)  # different init, so equality below comes from the weights
    clone = build_field(cfg)
    clone.load_state_dict(field.state_dict())
    x, d = points(200)
    with torch.no_grad():
        a, b = field(x, d), clone(x, d)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert clone.to_dict() == cfg


@pytest.mark.parametrize("name", list(FIELDS))
def test_param_groups_cover_every_parameter_once(name):
    field = make(name)
    groups = field.param_groups(0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in field.parameters()}
    assert all(g["lr"] > 0 for g in groups)
    torch.optim.Adam(groups)  # accepted as-is


@pytest.mark.parametrize("name", list(FIELDS))
def test_regularization_is_a_scalar(name):
    field = make(name)
    reg = field.regularization()
    assert reg.shape == () and torch.isfinite(reg) and reg >= 0
    if name == "mlp":
        assert reg == 0
    if name.startswith("tensorf"):
        assert reg > 0  # L1 on the density factors


@pytest.mark.parametrize("name", UPSAMPLING)
def test_on_step_upsampling_keeps_the_function(name):
    field = make(name)
    perturb(field, 0.3)
    x, d = points(2000, margin=0.0)
    with torch.no_grad():
        feat0, (s0, c0) = field.encode(x), field(x, d)
    shapes0 = [p.shape for p in field.parameters()]
    assert field.on_step(0) is False and field.on_step(4) is False
    assert field.on_step(5) is True
    assert field.on_step(6) is False  # already at the scheduled resolution
    assert field.to_dict()["resolution"] == TINY[name]["upsample"][-1][1]
    assert [p.shape for p in field.parameters()] != shapes0
    with torch.no_grad():
        feat1, (s1, c1) = field.encode(x), field(x, d)
    # (Bi/tri)linear resampling is exact at old nodes; between them, kinks of the coarse
    # piecewise-linear function are smoothed over one fine cell, hence the few-percent max error.
    scale = feat0.abs().max()
    assert (feat1 - feat0).abs().max() < 0.15 * scale
    assert (feat1 - feat0).abs().mean() < 0.01 * scale
    torch.testing.assert_close(s1, s0, rtol=0.15, atol=1e-3 * float(s0.abs().max()))
    torch.testing.assert_close(c1, c0, rtol=0.0, atol=0.03)


def test_schedule_never_downsamples():
    field = make("grid", resolution=8, upsample=[[0, 6], [3, 12]])
    assert field.on_step(0) is False
    assert field.on_step(3) is True and field.config.resolution == 12


@pytest.mark.parametrize(
    "cfg",
    [
        {"field": "nerf++"},
        {"aabb": AABB},
        {"field": "mlp", "bogus": 1},
        {"field": "hashgrid", "n_levels": 0},
        {"field": "hashgrid", "log2_table_size": "19"},
        {"field": "mlp", "width": True},
        {"field": "mlp", "density_shift": float("nan")},
        {"field": "mlp", "aabb": [[0, 0, 0], [1, -1, 1]]},
        {"field": "mlp", "aabb": [0, 1]},
        {"field": "tensorf-vm", "upsample": [[10, 64], [5, 128]]},
        {"field": "tensorf-cp", "upsample": "often"},
        {"field": "grid", "resolution": 1},
        {"field": "grid", "init_sigma": -1.0},
    ],
)
def test_bad_configs_raise_config_error(cfg):
    with pytest.raises(ConfigError):
        build_field(cfg)


def test_from_dict_checks_the_name():
    with pytest.raises(ConfigError):
        FIELDS["grid"].from_dict({"field": "mlp"})
    with pytest.raises(ConfigError):
        build_field([("field", "mlp")])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"field": "hashgrid", "n_levels": 0}, r"field\.n_levels=0 out of range \[1, 32\]"),
        ({"field": "hashgrid", "base_resolution": 64, "max_resolution": 32}, r"field\.max_resolution=32"),
        ({"field": "hashgrid", "log2_table_size": "19"}, "field.log2_table_size must be an integer"),
        ({"field": "mlp", "precision": "fp16"}, "field.precision='fp16' must be one of auto, fp32, bf16"),
        ({"field": "grid", "init_sigma": 20.0}, r"field\.init_sigma=20\.0 out of range \[1e-08, 12\.5\]"),
        ({"field": "tensorf-cp", "upsample": [[1, 1]]}, "field.upsample resolution=1 out of range"),
        ({"field": "mlp", "aabb": [0, 1]}, "field.aabb must be"),
        ({"field": "splats", "sh_degree": 4}, "field.sh_degree=4"),
        ({"field": "mlp", "bogus": 1}, "unknown field option.*bogus"),
    ],
)
def test_config_errors_name_the_option(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_field(cfg)


def test_typed_configs_build_fields_and_validate_on_construction():
    cfg = HashGridConfig(aabb=AABB, **TINY["hashgrid"])
    torch.manual_seed(0)
    field = HashGridField(cfg)
    assert field.config is cfg and field.to_dict() == make("hashgrid").to_dict()
    torch.manual_seed(0)
    same = HashGridField(aabb=AABB, **TINY["hashgrid"])  # keyword overrides: the same checks
    assert same.to_dict() == field.to_dict() and torch.equal(same.table, field.table)
    assert HashGridField(cfg, n_levels=2).config.n_levels == 2 and cfg.n_levels == 4
    with pytest.raises(ConfigError, match="field.n_levels"):
        HashGridConfig(n_levels=33)
    with pytest.raises(ConfigError, match="field.n_levels"):
        HashGridField(cfg, n_levels=33)
    with pytest.raises(TypeError):
        HashGridField(VoxelGridConfig())  # a config of another family
    assert TensoRFCPConfig().n_density == 96
    assert VoxelGridField(VoxelGridConfig(resolution=3, upsample=[])).geo_features == 15
    assert GaussianSplats(SplatsConfig(n=2, sh_degree=1)).to_dict()["n"] == 2


def test_old_option_names_still_load():
    """Runs saved before the rename (TensoRF `app_dim`, grid `n_features` = the geo block width) load."""
    old_vm = {"field": "tensorf-vm", "aabb": AABB, "resolution": 4, "upsample": [], "n_density": 2, "n_app": 3,
              "app_dim": 6}
    vm = build_field(old_vm)
    assert isinstance(vm, TensoRFVM) and vm.geo_features == 6 and vm.encode(points(5)[0]).shape == (5, 3 * 2 + 6)
    assert "app_dim" not in vm.to_dict() and vm.to_dict()["geo_features"] == 6
    grid = build_field({"field": "grid", "aabb": AABB, "resolution": 4, "upsample": [[5, 6]], "n_features": 5})
    assert grid.geo_features == 5 and grid.feature_grid.shape == (4, 4, 4, 5)
    assert build_field({**old_vm, "geo_features": 6}).geo_features == 6  # both names, same value
    with pytest.raises(ConfigError, match="old name"):
        build_field({**old_vm, "geo_features": 7})
    blob = build_field({"field": "blob", "inner": old_vm, "blob_density": 5.0, "blob_radius": 0.5,
                        "centre": [0, 0, 0], "start_levels": None, "active_levels": 0})
    assert isinstance(blob, BlobField) and blob.to_dict()["inner"]["geo_features"] == 6


def test_hash_n_features_is_per_level_not_the_block_width():
    field = make("hashgrid", n_features=3)
    assert field.encode(points(4)[0]).shape == (4, 4 * 3) and field.geo_features == TINY["hashgrid"]["geo_features"]


def _sphere_targets(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A coloured ball of radius 0.6 at (0, 0.5, -0.75): sigma [N] (~10 inside), rgb [N, 3]."""
    r = (x - torch.tensor([0.0, 0.5, -0.75])).norm(dim=-1)
    sigma = 10.0 * torch.sigmoid((0.6 - r) * 20.0)
    rgb = torch.stack([0.5 + 0.4 * torch.sin(3 * x[:, 0]), 0.5 + 0.4 * x[:, 1].tanh(), 0.2 + 0.0 * r], -1)
    return sigma, rgb


@pytest.mark.parametrize(
    "name,lr",
    [("mlp", 5e-3), ("hashgrid", 1e-2), ("tensorf-vm", 2e-2), ("tensorf-cp", 2e-2), ("grid", 1e-1)],
)
def test_fits_a_coloured_sphere(name, lr):
    over = {"resolution": 16, "upsample": []} if name in UPSAMPLING else {}
    if name == "tensorf-cp":
        over["resolution"] = 32
    if name == "hashgrid":
        over["init_scale"] = 1e-4
    field = make(name, **over)
    opt = torch.optim.Adam(field.param_groups(lr))
    g = torch.Generator().manual_seed(5)
    losses = []
    for _ in range(100):
        x, d = points(1024, seed=int(torch.randint(0, 10**6, (1,), generator=g)), margin=0.0)
        s_t, c_t = _sphere_targets(x)
        sigma, rgb = field(x, d)
        loss = ((torch.log1p(sigma) - torch.log1p(s_t)) ** 2).mean() + ((rgb - c_t) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first / 8, (first, last)
