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
