"""Config defaults, YAML files and CLI-style overrides."""

import pytest

from vision3d_kd.config import CONFIG_DIR
from vision3d_kd.errors import ConfigError
from vision3d_kd.fields import MODELS, build_field
from vision3d_kd.train.config import apply_overrides, load_fit_config


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_field_has_a_config_that_builds(name):
    cfg = load_fit_config(name)
    cfg.train.validate()
    field = build_field({**cfg.field, "field": name})
    assert field.name == name


def test_every_config_file_names_a_field():
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == set(MODELS)


def test_overrides_parse_yaml_values():
    cfg = apply_overrides(load_fit_config("hashgrid"), ["train.steps=12", "field.n_levels=4", "train.background=white"])
    assert cfg.train.steps == 12 and cfg.field["n_levels"] == 4 and cfg.train.background == "white"


@pytest.mark.parametrize("bad", ["train.nope=1", "steps=3", "train.steps=abc", "other.x=1"])
def test_bad_overrides_are_config_errors(bad):
    with pytest.raises(ConfigError):
        apply_overrides(load_fit_config("hashgrid"), [bad])


def test_out_of_range_values_are_rejected():
    cfg = apply_overrides(load_fit_config("grid"), ["train.occ_opacity_threshold=2"])
    with pytest.raises(ConfigError):
        cfg.train.validate()
    with pytest.raises(ConfigError):
        load_fit_config("nerf-does-not-exist")


def test_splats_get_their_own_training_settings():
    cfg = apply_overrides(load_fit_config("splats"), ["train.init_points=10", "train.ssim_lambda=0.5"])
    assert cfg.train.init_points == 10 and cfg.train.ssim_lambda == 0.5
    with pytest.raises(ConfigError):
        apply_overrides(load_fit_config("splats"), ["train.batch_rays=3"])  # a field option, not a splat one
    bad = apply_overrides(load_fit_config("splats"), ["train.backend=vulkan"])
    with pytest.raises(ConfigError):
        bad.train.validate()


def test_runs_written_with_the_old_alpha_names_still_load():
    """alpha_thre / occ_alpha_threshold became opacity_min / occ_opacity_threshold (one word for opacity)."""
    from vision3d_kd.train.config import FitConfig

    old = {"field_name": "grid", "field": {}, "train": {"alpha_thre": 0.2, "occ_alpha_threshold": 0.05}}
    cfg = FitConfig.from_dict(old)
    assert cfg.train.opacity_min == 0.2 and cfg.train.occ_opacity_threshold == 0.05
    assert apply_overrides(load_fit_config("grid"), ["train.alpha_thre=0.3"]).train.opacity_min == 0.3


def test_check_config_coerces_and_checks_declared_bounds():
    import dataclasses
    from typing import Literal

    from vision3d_kd.config import CheckedConfig, aabb_option, bounded, dataclass_from, schedule_option

    @dataclasses.dataclass
    class DemoConfig(CheckedConfig):
        section = "demo"
        count: int = bounded(2, 1, 8)
        top: int = bounded(4, lo=lambda c: c.count)
        rate: float = bounded(0.5, lo=0.0)
        mode: Literal["a", "b"] = "a"
        steps: tuple[tuple[int, int], ...] = schedule_option(((1, 2),), lo=2, what="size")
        box: tuple = aabb_option(((0, 0, 0), (1, 1, 1)))
        pair: tuple[float, float] | None = None

    cfg = dataclass_from(DemoConfig, {"count": 3.0, "rate": "1e-3", "steps": [[0, 4], [5, 8]], "pair": [1, 2]},
                         "demo")
    assert (cfg.count, cfg.rate, cfg.steps, cfg.pair) == (3, 1e-3, ((0, 4), (5, 8)), (1.0, 2.0))
    assert cfg.box == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) and type(cfg.count) is int
    for bad, match in [({"count": 9}, r"demo\.count=9 out of range \[1, 8\]"),
                       ({"count": 2.5}, "demo.count must be an integer"),
                       ({"count": 5}, r"demo\.top=4 must be >= 5"),
                       ({"rate": float("inf")}, "demo.rate must be a finite number"),
                       ({"rate": -1}, r"demo\.rate=-1\.0 must be >= 0\.0"),
                       ({"mode": "c"}, "demo.mode='c' must be one of a, b"),
                       ({"steps": [[3, 4], [3, 8]]}, "demo.steps steps must increase"),
                       ({"steps": [[0, 1]]}, "demo.steps size=1 must be >= 2"),
                       ({"box": [[0, 0, 0], [1, 1, 0]]}, "demo.box must be"),
                       ({"pair": [1]}, "demo.pair must have 2 values"),
                       ({"nope": 1}, "unknown demo option")]:
        with pytest.raises(ConfigError, match=match):
            dataclass_from(DemoConfig, bad, "demo")
    with pytest.raises(ConfigError, match="demo.count"):
        DemoConfig(count=0)  # direct construction takes the same path


def test_train_config_types_are_checked_by_the_same_function():
    with pytest.raises(ConfigError, match="train.steps must be an integer"):
        apply_overrides(load_fit_config("hashgrid"), ["train.steps=12.5"])
    with pytest.raises(ConfigError, match="train.background must be a string"):
        apply_overrides(load_fit_config("hashgrid"), ["train.background=3"])
    assert apply_overrides(load_fit_config("hashgrid"), ["train.lr=1e-3"]).train.lr == 1e-3
