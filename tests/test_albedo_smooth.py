"""The colour-smoothness penalty (`generate.lambda_albedo_smooth`, a layout's `generate.box_albedo_smooth`,
`render.shading.Shader.smooth_step`): zero on a field of one colour, the expected L1 of the logits on a colour
ramp (saturated colours pay too), only on the samples that matter, a gradient into the colour (with
`albedo_smooth_colour_only`, into the colour head alone), its offset scaled with a layout's smallest object, and
the loop asking for it."""

from __future__ import annotations

import json

import pytest
import torch

from vision3d_kd.data.procedural import Shading
from vision3d_kd.render.shading import Shader
from vision3d_kd.render.volume import RenderConfig, render_rays


class Ramp(torch.nn.Module):
    """A ball of radius 0.6 whose colour ramps along x: c(x) = sigmoid(slope · x) (grey for slope 0)."""

    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])

    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = torch.nn.Parameter(torch.tensor(float(slope)))

    def density(self, x):
        return 40.0 * torch.sigmoid(40.0 * (0.6 - x.norm(dim=-1)))

    def colour(self, x):
        return torch.sigmoid(self.slope * x[:, :1]).expand(-1, 3)

    def forward_rays(self, x, rays_d, ray_indices):
        return self.density(x), self.colour(x)


def _points(n: int = 2000) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(1)), dim=-1) * 0.5


def test_smoothness_is_zero_on_one_colour_and_the_expected_l1_on_a_ramp():
    x = _points()
    d, ri = -torch.nn.functional.normalize(x, dim=-1), torch.arange(len(x))
    for slope in (0.0, 2.0, 15.0):  # logits slope·x: E|slope·δx| = slope·σ·√(2/π), saturated (|x| > 0.3) or not
        field, want = Ramp(slope), slope * 0.05 * (2 / torch.pi) ** 0.5
        sh = Shader(field, "albedo", orientation=False, smooth_step=0.05, generator=torch.Generator().manual_seed(0))
        _, pen = sh(x, field.density(x), field.colour(x), d, ri)
        assert float(pen["albedo_smooth"].detach().mean()) == pytest.approx(want, rel=0.08, abs=1e-6)


def test_smoothness_only_on_the_shaded_samples_and_absent_when_off():
    field, x = Ramp(1.0), _points(10)
    d, ri = -torch.nn.functional.normalize(x, dim=-1), torch.arange(10)
    shaded = torch.arange(10) % 2 == 0
    sh = Shader(field, "albedo", orientation=False, smooth_step=0.1, generator=torch.Generator().manual_seed(0))
    _, pen = sh(x, field.density(x), field.colour(x), d, ri, shaded)
    assert (pen["albedo_smooth"][~shaded] == 0).all() and (pen["albedo_smooth"][shaded] > 0).all()
    _, pen = Shader(field, "lambertian", Shading(), fd_step=1e-3)(x, field.density(x), field.colour(x), d, ri)
    assert "albedo_smooth" not in pen


def test_render_rays_weights_the_penalty_and_it_pulls_the_colour_flat():
    field = Ramp(1.0)
    g = torch.Generator().manual_seed(0)
    o = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1) * 2.5
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g) * 0.1 - o, dim=-1)
    sh = Shader(field, "albedo", orientation=False, smooth_step=0.05, generator=g)
    out = render_rays(field, o, d, None, torch.ones(64, 3), RenderConfig(step_size=0.02), shader=sh)
    covered = float(out["opacity"].detach().mean())
    assert covered > 0.5  # Σ w·p / R ≈ the rays' mean opacity × E p (slope·σ·√(2/π) = 0.04)
    assert float(out["albedo_smooth"].detach()) == pytest.approx(covered * 0.05 * (2 / torch.pi) ** 0.5, rel=0.15)
    out["albedo_smooth"].backward()
    assert float(field.slope.grad) > 0  # descending it flattens the ramp


def test_colour_only_smoothing_trains_the_colour_heads_and_leaves_the_geometry_alone():
    """`smooth_colour_only` on a layout's field (box tables, colour heads and density MLPs): the same penalty
    value as the plain one for the same offsets, a gradient in the colour heads and none in the hash tables or
    density MLPs; the plain one reaches those too."""
    from vision3d_kd.fields import BlobField

    boxes = [[-0.9, -0.9, -0.9, 0.0, 0.9, 0.9], [0.0, -0.9, -0.9, 0.9, 0.9, 0.9]]
    inner = {"field": "hashgrid", "aabb": [[-1.0] * 3, [1.0] * 3], "n_levels": 2, "log2_table_size": 8,
             "max_resolution": 16, "box_tables": boxes, "box_heads": True, "box_density_heads": True}
    torch.manual_seed(0)
    field = BlobField(inner=inner, boxes=boxes)
    x = _points(200)
    d, ri = -torch.nn.functional.normalize(x, dim=-1), torch.arange(len(x))
    values, grads = [], []
    for only in (False, True):
        field.zero_grad()
        sigma, rgb = field.forward_rays(x, d, ri)
        sh = Shader(field, "albedo", orientation=False, smooth_step=0.05, smooth_colour_only=only,
                    generator=torch.Generator().manual_seed(0))
        _, pen = sh(x, sigma, rgb, d, ri)
        pen["albedo_smooth"].sum().backward()
        values.append(pen["albedo_smooth"].detach())
        grads.append({n: (p.grad is not None and bool(p.grad.abs().sum() > 0)) for n, p in field.named_parameters()})
    assert torch.allclose(values[0], values[1], atol=1e-5) and float(values[0].mean()) > 0
    geometry = [n for n in grads[0] if "table" in n or "density_net" in n]
    colour = [n for n in grads[0] if "color_net" in n]
    assert geometry and colour
    assert all(grads[1][n] for n in colour if grads[0][n]) and any(grads[1][n] for n in colour)
    assert not any(grads[1][n] for n in geometry) and any(grads[0][n] for n in geometry)


def test_a_layout_scales_the_offset_with_its_smallest_object_and_has_its_own_weight():
    from vision3d_kd.data.layout import Layout, LayoutObject
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.lucid import baseline_setup, layout_setup

    setup = load_generate_config("sds", None, ["generate.box_albedo_smooth=500", "generate.lambda_albedo_smooth=7"])
    layout = Layout((LayoutObject("a red ball", (-1.0, -1.0, -1.0, -0.5, -0.5, -0.5)),
                     LayoutObject("a gray table", (0.0, 0.0, 0.0, 1.0, 1.0, 1.0))))
    g = layout_setup(setup, layout).generate
    assert g.albedo_smooth_step == pytest.approx(setup.generate.albedo_smooth_step * 0.25)
    assert g.step_size == pytest.approx(setup.generate.step_size * 0.25)
    assert g.lambda_albedo_smooth == 500  # a layout's weight is box_albedo_smooth ...
    assert baseline_setup(setup, layout).generate.lambda_albedo_smooth == 7  # ... plain SDS keeps a lone run's


def test_generate_passes_the_penalty_to_every_shaded_render(sd_pipe, tmp_path, monkeypatch):
    """`--set generate.box_albedo_smooth=L` (a layout's weight): every render of the loop asks for the penalty at
    the configured offset (× the layout's smallest object's scale) and the run records the setting; off, none
    does."""
    from tests.conftest import run_cli

    steps = []
    real = Shader._smoothness

    def spy(self, *args):
        steps.append(self.smooth_step)
        return real(self, *args)

    monkeypatch.setattr(Shader, "_smoothness", spy)
    from vision3d_kd.data.layout import Layout, LayoutObject

    layout = Layout((LayoutObject("a red ball", (-0.5, -0.5, -0.5, 0.5, 0.5, 0.5)),)).write(tmp_path / "l.json")
    fast = ["--set", "generate.size=16", "--set", "generate.mesh_resolution=16", "--set", "generate.video_frames=2",
            "--set", "generate.video_size=16", "--set", "field.log2_table_size=12", "--set", "field.n_levels=4",
            "--set", "field.max_resolution=64", "--set", "generate.occ_resolution=16", "--quiet", "--steps", "2"]
    for lam in (0, 100):
        out = tmp_path / f"run{lam}"
        assert run_cli(["generate", "--layout", str(layout), "--prior", str(sd_pipe), "--out", str(out), *fast,
                        "--set", f"generate.box_albedo_smooth={lam}"]) == 0
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["generate"]["generate"]["box_albedo_smooth"] == lam
        assert (steps == []) if lam == 0 else (len(steps) >= 2 and steps == pytest.approx([0.02 * 0.5] * len(steps)))
