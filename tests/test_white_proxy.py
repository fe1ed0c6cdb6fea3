"""The gray proxy for white objects (guidance/white_proxy.py): which captions get one, the albedo scale in
renders, the loop telling the prior "gray" on proxy steps only for prompts naming white (other runs keep
their random stream), the default per prior, and benchmarks reusing runs the setting cannot have acted on."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import one_line_error, run_cli
from vision3d_kd.data.objects import COLOURS
from vision3d_kd.guidance.white_proxy import proxy_albedo_scale, proxy_caption


@pytest.mark.parametrize("caption,want", [
    ("a white snowman", "a gray snowman"),
    ("an orange house with a white roof", "an orange house with a gray roof"),
    ("a white cube and a white ball", "a gray cube and a gray ball"),
    ("a red chair", None),
    ("a whitewashed wall", None),
])
def test_captions_naming_white_get_gray_and_others_none(caption, want):
    assert proxy_caption(caption) == want


def test_the_scale_turns_the_worlds_white_into_its_gray():
    assert torch.allclose(torch.tensor(COLOURS["white"]) * proxy_albedo_scale(), torch.tensor(COLOURS["gray"]))


@pytest.mark.parametrize("mode", ["albedo", "lambertian", "textureless"])
def test_the_shader_scales_the_albedo_except_in_textureless_renders(mode):
    from vision3d_kd.data.procedural import Shading
    from vision3d_kd.render.shading import Shader

    class Ball(torch.nn.Module):
        def density(self, x):
            return 20.0 * (0.6 - x.norm(dim=-1)).clamp_min(0.0) * 10

    x = torch.nn.functional.normalize(torch.randn(20, 3, generator=torch.Generator().manual_seed(0)), dim=-1) * 0.55
    rgb = torch.full((20, 3), 0.9)
    args = (x, Ball().density(x), rgb, -x, torch.arange(20))
    plain = Shader(Ball(), mode, Shading(), fd_step=1e-3)
    scaled = Shader(Ball(), mode, Shading(), fd_step=1e-3, albedo_scale=proxy_albedo_scale())
    a, b = plain(*args)[0], scaled(*args)[0]
    if mode == "textureless":
        assert torch.equal(a, b)
    else:
        assert torch.allclose(b, a * proxy_albedo_scale(), atol=1e-6) and not torch.allclose(a, b)


def test_a_frozen_proxy_teaches_the_density_but_not_the_colour():
    """white_proxy_colour=False: the proxy's scaled colour carries no gradient, its opacity still does."""
    from vision3d_kd.cameras import cameras_from_spherical
    from vision3d_kd.data.procedural import Shading
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.students import FieldStudent, SplatStudent
    from vision3d_kd.render.shading import Shader

    cams = cameras_from_spherical(torch.tensor([15.0]), torch.tensor([0.0]), torch.tensor([3.5]),
                                  torch.tensor([40.0]), 24, 24)
    field_setup = load_generate_config("sds", None, ["field.log2_table_size=10", "field.n_levels=2"])
    splat_setup = load_generate_config("sds", None, ["generate.student=splats", "generate.splats=200"])
    for make, colour, density in [(lambda: FieldStudent(field_setup, torch.device("cpu")), "color_net", "table"),
                                  (lambda: SplatStudent(splat_setup, torch.device("cpu"), torch.Generator()),
                                   "sh_dc", "opacity_logits")]:
        grads = []
        for freeze in (False, True):
            torch.manual_seed(0)
            s = make()
            shader = Shader(None, "albedo", Shading(), orientation=False, albedo_scale=proxy_albedo_scale(),
                            freeze_albedo=freeze)
            (1.0 - s.render(cams, 0, shader, torch.Generator().manual_seed(0))["rgb"]).sum().backward()
            named = dict(s.model.named_parameters())
            pick = [p.grad for n, p in named.items() if n.startswith(f"inner.{colour}") or n == colour]
            dens = [p.grad for n, p in named.items() if n.endswith(density)]
            grads.append((sum(float(g.abs().sum()) for g in pick if g is not None),
                          sum(float(g.abs().sum()) for g in dens if g is not None)))
        (c_free, d_free), (c_frozen, d_frozen) = grads
        assert c_free > 0 and c_frozen == 0 and d_free > 0 and d_frozen > 0


def _prompts_seen(sd_pipe, tmp_path, prompt: str, proxy: float | None, monkeypatch, steps: int = 4):
    """(prompts of every score-distillation term, the log records) of a short run on the tiny pipeline."""
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.loop import generate
    from vision3d_kd.guidance.diffusers_prior import DiffusersPrior
    from vision3d_kd.guidance.prompts import ViewPrompts

    seen: list[str] = []
    real = ViewPrompts.for_cameras

    def spy(self, camera):
        seen.append(self.prompt)
        return real(self, camera)

    monkeypatch.setattr(ViewPrompts, "for_cameras", spy)
    sets = [f"generate.steps={steps}", "generate.size=32", "generate.p_lambertian=1.0"]
    sets += [] if proxy is None else [f"generate.white_proxy={proxy}"]
    setup = load_generate_config("sds", None, sets)
    out = tmp_path / f"{prompt}-{proxy}".replace(" ", "_")
    generate(prompt, out, setup, DiffusersPrior(sd_pipe), str(sd_pipe), show_progress=False)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return seen, [r for r in log if "loss" in r]


def test_proxy_steps_tell_the_prior_gray_and_only_for_white_prompts(sd_pipe, tmp_path, monkeypatch):
    seen, log = _prompts_seen(sd_pipe, tmp_path, "a white mug", 1.0, monkeypatch)
    assert seen == ["a gray mug"] * 4 and all(r.get("proxy") for r in log)
    seen, log = _prompts_seen(sd_pipe, tmp_path, "a white mug", 0.0, monkeypatch)
    assert seen == ["a white mug"] * 4 and not any(r.get("proxy") for r in log)
    # another pipeline than the bundled prior: no proxy unless asked for
    seen, _ = _prompts_seen(sd_pipe, tmp_path, "a white mug", None, monkeypatch)
    assert seen == ["a white mug"] * 4


def test_a_prompt_without_white_keeps_its_random_stream(sd_pipe, tmp_path, monkeypatch):
    _, with_proxy = _prompts_seen(sd_pipe, tmp_path, "a red mug", 0.5, monkeypatch, steps=3)
    _, without = _prompts_seen(sd_pipe, tmp_path, "a red mug", 0.0, monkeypatch, steps=3)
    def key(log):
        return [(r["loss"], r["t"], r["shading"]) for r in log]

    assert key(with_proxy) == key(without)


def test_the_default_is_half_the_steps_with_the_bundled_prior_and_none_with_others(sd_pipe):
    from vision3d_kd.assets import default_prior_path
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.loop import WHITE_PROXY, white_proxy_for

    setup = load_generate_config("sds")
    assert WHITE_PROXY == 0.5
    assert white_proxy_for(setup, None) == white_proxy_for(setup, str(default_prior_path(None))) == WHITE_PROXY
    assert white_proxy_for(setup, str(sd_pipe)) == 0.0
    assert white_proxy_for(load_generate_config("sds", None, ["generate.white_proxy=0.25"]), str(sd_pipe)) == 0.25


def test_a_benchmark_reuses_runs_the_setting_cannot_have_acted_on(tmp_path):
    from vision3d_kd.bench.text_to_3d import check_settings
    from vision3d_kd.errors import RunError
    from vision3d_kd.generation.config import load_generate_config

    setup = load_generate_config("sds")
    before = setup.to_dict()
    del before["generate"]["white_proxy"]  # a run saved before the setting existed
    for prompt, reused in (("a red mug", True), ("a white mug", False)):
        run = tmp_path / prompt.replace(" ", "_")
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"generate": before, "prompt": prompt, "prior_prompt": prompt}))
        if reused:
            check_settings(run, setup)
        else:
            with pytest.raises(RunError, match="white_proxy"):
                check_settings(run, setup)


def test_a_bad_value_is_a_one_line_error(capsys, tmp_path):
    code = run_cli(["generate", "a white mug", "--set", "generate.white_proxy=2", "--out", str(tmp_path / "x")])
    assert code == 2 and one_line_error(capsys, "white_proxy")


def test_the_lucid_benchmark_remakes_white_runs_made_before_the_proxy(tmp_path):
    from vision3d_kd.bench.lucid import _one
    from vision3d_kd.errors import RunError
    from vision3d_kd.generation.config import load_generate_config

    for sentence, white in (("a red ball next to a blue cube", False), ("a white ball next to a blue cube", True)):
        settings = load_generate_config("sds", None, ["generate.seed=0"]).to_dict()
        del settings["generate"]["white_proxy"]  # scored before the setting existed
        run = tmp_path / sentence.replace(" ", "_")
        run.mkdir()
        rec = {"sets": [], "steps": 600, "settings": settings, "object_prompts": sentence.split(" next to ")}
        (run / "score.json").write_text(json.dumps(rec))
        if white:
            with pytest.raises(RunError, match="white_proxy"):
                _one(sentence, "lucid", 0, run, None, "prior", None, [])
        else:
            assert _one(sentence, "lucid", 0, run, None, "prior", None, [])["steps"] == 600


def test_the_lucid_benchmark_rescores_runs_scored_by_older_rules(tmp_path, monkeypatch):
    """A finished run scored by older rules (no colour agreement, objects scored without the run's grid: no
    `scorer` in its score) is rescored from its weights (not remade) and the score rewritten with the current
    `SCORER`; without weights (a committed score) it is reported as it is; a current score is not redone."""
    from vision3d_kd.bench import lucid
    from vision3d_kd.generation.config import load_generate_config

    sentence = "a red ball next to a blue cube"
    fresh = [{"prompt": "a red ball", "iou": 0.9, "colour_agreement": 0.8}, {"prompt": "a blue cube", "iou": 0.8,
                                                                             "colour_agreement": 0.7}]
    calls = []
    monkeypatch.setattr(lucid, "_score_objects", lambda run_dir, layout: calls.append(run_dir) or (fresh, {}))
    settings = load_generate_config("sds", None, ["generate.seed=0"]).to_dict()
    old = [{"prompt": "a red ball", "iou": 0.9}, {"prompt": "a blue cube", "iou": 0.8}]
    for weights, scorer in ((False, None), (True, None), (True, lucid.SCORER)):
        run = tmp_path / f"run{weights}{scorer}"
        run.mkdir()
        rec = {"layout": sentence, "sets": [], "steps": 600, "settings": settings, "objects": old,
               "object_prompts": ["a red ball", "a blue cube"], **({"scorer": scorer} if scorer else {})}
        (run / "score.json").write_text(json.dumps(rec))
        if weights:
            (run / "weights.safetensors").write_bytes(b"")
        got = lucid._one(sentence, "lucid", 0, run, None, "prior", None, [])
        redone = weights and scorer is None
        assert got["objects"] == (fresh if redone else old)
        saved = json.loads((run / "score.json").read_text())
        assert saved["objects"] == got["objects"] and saved.get("scorer") == (lucid.SCORER if redone else scorer)
    assert calls == [tmp_path / "runTrueNone"]


def test_a_splat_students_proxy_render_is_the_render_of_its_scaled_colours():
    import copy

    from vision3d_kd.cameras import cameras_from_spherical
    from vision3d_kd.fields.splats import SH_C0, rgb_to_sh_dc
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.students import build_student
    from vision3d_kd.render.shading import Shader

    setup = load_generate_config("sds", None, ["generate.student=splats", "generate.splats=300"])
    student = build_student(setup, torch.device("cpu"), torch.Generator().manual_seed(0))
    with torch.no_grad():  # varied colours, so the scale's per-channel factors show
        student.model.sh_dc.copy_(rgb_to_sh_dc(torch.rand(300, 3, generator=torch.Generator().manual_seed(1)))[:, None])
    cams = cameras_from_spherical(torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([3.5]), torch.tensor([40.0]),
                                  32, 32)
    k = proxy_albedo_scale()
    got = student.render(cams, 0, Shader(None, "albedo", albedo_scale=k), torch.Generator())["rgb"]
    scaled = copy.deepcopy(student)
    with torch.no_grad():
        rgb = scaled.model.sh_dc[:, 0] * SH_C0 + 0.5
        scaled.model.sh_dc.copy_(rgb_to_sh_dc(rgb * k)[:, None])
    want = scaled.render(cams, 0, None, torch.Generator())["rgb"]
    plain = student.render(cams, 0, None, torch.Generator())["rgb"]
    assert torch.allclose(got, want, atol=1e-5) and (got - plain).abs().max() > 0.05
