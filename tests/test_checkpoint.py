"""Run directories: atomic safetensors round trip, NaN and pickle refusal."""

import json

import pytest
import torch

from vision3d_kd.errors import RunError
from vision3d_kd.fields import build_field
from vision3d_kd.runs import load_field, save_field


def test_save_load_round_trip(tmp_path):
    field = build_field({"field": "grid", "resolution": 8, "upsample": []})
    save_field(tmp_path / "run", field, {"note": "x"})
    loaded, cfg = load_field(tmp_path / "run")
    assert cfg["note"] == "x"
    x = torch.rand(50, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    for a, b in zip(field(x, d), loaded(x, d), strict=True):
        assert torch.equal(a, b)
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_nan_weights_are_refused(tmp_path):
    field = build_field({"field": "grid", "resolution": 8, "upsample": []})
    with torch.no_grad():
        next(field.parameters()).view(-1)[0] = float("nan")
    save_field(tmp_path / "run", field)
    with pytest.raises(RunError, match="NaN"):
        load_field(tmp_path / "run")


def test_pickle_weights_are_refused_without_loading(tmp_path, capfd):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"field": {"field": "grid"}}))

    class Boom:
        def __reduce__(self):
            return (print, ("UNSAFE: executed",))

    torch.save(Boom(), run / "weights.pt")
    with pytest.raises(RunError, match="pickle"):
        load_field(run)
    assert "UNSAFE" not in capfd.readouterr().out


def test_missing_run_dir(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        load_field(tmp_path / "nope")
