"""`v3kd generate`: the loop end to end on a tiny Stable-Diffusion-style pipeline (every method, fields and
splats, resume), the density blob and progressive levels, shading normals, one-line errors for bad input,
and (with the bundled prior in vision3d_kd/assets/prior) a short run that makes a red ball matching the true shape."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import one_line_error, run_cli
from vision3d_kd.bench.clients import installed, validate_gltf

FAST = ["--set", "generate.size=32", "--set", "generate.mesh_resolution=32", "--set", "generate.video_frames=4",
        "--set", "generate.video_size=32", "--set", "generate.checkpoint_every=2", "--quiet"]


@pytest.mark.parametrize("method", ["sds", "vsd", "bsd"])
def test_generate_runs_end_to_end_on_a_local_sd_style_pipeline(sd_pipe, tmp_path, method):
    out = tmp_path / method
    assert run_cli(["generate", "a red mug", "--method", method, "--prior", str(sd_pipe), "--out", str(out),
                    "--steps", "4", *FAST]) == 0
    for name in ("config.json", "weights.safetensors", "metrics.json", "log.jsonl", "turntable.mp4",
                 "train_state.safetensors"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["method"] == method
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["prompt"] == "a red mug" and cfg["generate"]["method"] == method
    losses = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in losses if "loss" in r]
    assert losses[-1][0] == 4 and all(math.isfinite(v) for _, v in losses)
    import imageio.v2 as imageio

    frames = [f for f in imageio.get_reader(out / "turntable.mp4")]  # noqa: C416 (list() asks len(): inf)
    assert len(frames) == 4 and all(f.shape == (32, 32, 3) for f in frames)
    assert all((f.astype(float).mean(-1) < 200).mean() > 0.05 for f in frames)  # the object is in every frame
    # the blob makes a solid ball at the start: the mesh exists
    assert metrics["mesh_faces"] > 0 and (out / "mesh.glb").is_file()
    import trimesh

    mesh = trimesh.load(out / "mesh.glb", force="mesh")
    assert len(mesh.faces) == metrics["mesh_faces"]
    aabb = torch.tensor(cfg["field"]["aabb"] if cfg["field"].get("aabb") else cfg["field"]["inner"]["aabb"])
    v = torch.as_tensor(mesh.vertices, dtype=torch.float32)  # GLB is y-up: compare extents, not axes
    assert (v.abs().max(0).values <= aabb.abs().max() + 1e-3).all() and mesh.area > 0
    if installed("gltf-validator"):  # (the other checks hold without it)
        report = validate_gltf(out / "mesh.glb")
        assert report["errors"] == 0 and report["warnings"] == 0, report["messages"]


def test_generate_resumes_from_its_checkpoint_and_splats_student(sd_pipe, tmp_path):
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.loop import generate
    from vision3d_kd.guidance.diffusers_prior import DiffusersPrior

    prior = DiffusersPrior(sd_pipe)
    setup = load_generate_config("sds", None, ["generate.steps=6", "generate.size=32", "generate.checkpoint_every=3"])

    class Crash(Exception):
        pass

    def crash_at_4(step, rec):
        if step == 4:
            raise Crash

    with pytest.raises(Crash):
        generate("a red mug", tmp_path / "a", setup, prior, show_progress=False, callback=crash_at_4)
    resumed = generate("a red mug", tmp_path / "a", setup, prior, resume=True, show_progress=False)
    straight = generate("a red mug", tmp_path / "b", setup, prior, show_progress=False)
    assert resumed["steps"] == straight["steps"] == 6
    from vision3d_kd.checkpoint import load_tensors

    wa, wb = load_tensors(tmp_path / "a" / "weights.safetensors"), load_tensors(tmp_path / "b" / "weights.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wb)
    splats = load_generate_config("sds", None, ["generate.steps=3", "generate.size=32", "generate.student=splats",
                                                "generate.splats=500"])
    m = generate("a red mug", tmp_path / "s", splats, prior, show_progress=False)
    assert m["steps"] == 3 and (tmp_path / "s" / "weights.safetensors").is_file()


def test_vsd_particles_are_distinct_students_that_train_and_resume(sd_pipe, tmp_path):
    """--particles 2: two students with their own weights and optimiser, one shared LoRA; an interrupted run
    resumes to the same weights for both; the second particle is a run of its own (load_run renders it)."""
    from vision3d_kd.checkpoint import load_tensors
    from vision3d_kd.export.rig import rig_cameras
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.loop import generate
    from vision3d_kd.guidance.diffusers_prior import DiffusersPrior
    from vision3d_kd.render.image import render
    from vision3d_kd.runs import load_run, render_settings_from

    prior = DiffusersPrior(sd_pipe)

    def setup(steps: int):
        return load_generate_config("vsd", None, [f"generate.steps={steps}", "generate.size=32", "generate.particles=2",
                                                  "generate.checkpoint_every=2"])

    class Crash(Exception):
        pass

    def crash_at_3(step, rec):
        if step == 3:
            raise Crash

    generate("a red mug", tmp_path / "one", setup(1), prior, show_progress=False)
    generate("a red mug", tmp_path / "straight", setup(4), prior, show_progress=False)
    with pytest.raises(Crash):
        generate("a red mug", tmp_path / "resumed", setup(4), prior, show_progress=False, callback=crash_at_3)
    generate("a red mug", tmp_path / "resumed", setup(4), prior, resume=True, show_progress=False)

    def weights(run):
        return [load_tensors(p / "weights.safetensors") for p in (tmp_path / run, tmp_path / run / "particles" / "1")]

    first, last, resumed = weights("one"), weights("straight"), weights("resumed")
    for a, b, c in zip(first, last, resumed, strict=True):
        params = [k for k in b if not k.endswith(("aabb", "centre"))]  # (buffers: the box and blob centre)
        assert all(not torch.equal(a[k], b[k]) for k in params), [k for k in params if torch.equal(a[k], b[k])]
        assert all(torch.allclose(b[k], c[k], atol=1e-5) for k in b)  # the resumed run ends where the straight one does
    assert any(not torch.equal(last[0][k], last[1][k]) for k in last[0])  # two different students
    state = load_tensors(tmp_path / "straight" / "train_state.safetensors")
    assert any(k.startswith("extra.lora.adam.") for k in state)
    model, grid, cfg = load_run(tmp_path / "straight" / "particles" / "1")
    assert cfg["particle"] == 1
    cams = rig_cameras(cfg["render"], 2, size=32)
    assert float(render(model, cams, 0, grid, render_settings_from(cfg))["opacity"].max()) > 0.5  # the blob is there


def test_blob_field_starts_as_a_ball_and_unlocks_hash_levels():
    from vision3d_kd.fields import BlobField, build_field

    f = BlobField(inner={"field": "hashgrid", "n_levels": 8, "log2_table_size": 12, "aabb": [[-1] * 3, [1] * 3]},
                  blob_density=10.0, blob_radius=0.5, start_levels=2)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9]])
    assert torch.allclose(f.bias(x), torch.tensor([10.0, 10.0 * (1 - math.sqrt(3 * 0.81) / 0.5)]))
    sigma = f.density(x)
    assert sigma[0] > 5.0 and sigma[1] < 1e-3
    feat = f.encode(torch.rand(5, 3))
    assert feat.shape == (5, 16) and (feat[:, 4:] == 0).all() and (feat[:, :4] != 0).any()
    f.set_progress(0.5)
    assert f.active_levels == 8
    again = build_field(f.to_dict())
    again.load_state_dict(f.state_dict())
    assert torch.allclose(again.density(x), f.density(x)) and again.active_levels == 8


def test_a_blob_teacher_gives_distillation_its_density_with_the_blob(tmp_path):
    """What PVD matches (`Teacher.block`) is the log of the density the blob field renders, bias and
    softplus included — not the inner field's raw head output (which puts a ball at the centre to zero)."""
    from vision3d_kd.distill.teacher import Teacher
    from vision3d_kd.fields import BlobField

    f = BlobField(inner={"field": "hashgrid", "n_levels": 4, "log2_table_size": 10, "aabb": [[-1] * 3, [1] * 3]},
                  blob_density=10.0, blob_radius=0.5)
    x = torch.cat([torch.rand(56, 3) * 2 - 1, torch.rand(8, 3) * 0.2 - 0.1])  # the last 8 near the centre
    sigma, rgb = f(x)
    log_sigma, geo = Teacher(f, None, {}, None, tmp_path).block(x)
    assert torch.allclose(log_sigma.exp(), sigma, rtol=1e-5) and torch.allclose(sigma, f.density(x))
    assert torch.allclose(f.color_head(geo, torch.tensor([[0.0, 0.0, -1.0]]).expand(64, 3)), rgb)
    inner_log, _ = f.inner.log_density_head(f.encode(x))
    # the blob's +10 at the centre is in the target (softplus(~10) ~ 8 / scene unit; the inner head alone ~1)
    assert (log_sigma[-8:].exp() > 5.0).all() and (inner_log[-8:].exp() < 2.0).all()
    with pytest.raises(TypeError, match="block"):
        f.log_density_head(f.encode(x))


def test_density_normals_point_outwards_on_a_ball():
    from vision3d_kd.render.shading import Shader, density_normals

    class Ball:
        def density(self, x):
            return torch.relu(1.0 - x.norm(dim=-1)) * 10

    x = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1) * 0.6
    n = density_normals(Ball(), x, Ball().density(x), 1e-3)
    assert (torch.nn.functional.cosine_similarity(n, x / 0.6, dim=-1) > 0.999).all()
    from vision3d_kd.data.procedural import Shading

    sh = Shader(Ball(), "lambertian", Shading(light_dir=(0.0, 0.0, 1.0), ambient=0.25), fd_step=1e-3)
    rgb, pen = sh(x, Ball().density(x), torch.full((50, 3), 0.8), -x, torch.arange(50))
    want = 0.8 * (0.25 + 0.75 * (x[:, 2] / 0.6).clamp_min(0))
    assert torch.allclose(rgb[:, 0], want, atol=1e-3)
    assert torch.allclose(pen["orientation"], torch.zeros(50))  # every normal faces its camera


def test_light_samples_are_shaded_facing_the_camera_and_change_a_pixel_by_at_most_their_weight():
    from vision3d_kd.data.procedural import Shading
    from vision3d_kd.kernels import composite_weights
    from vision3d_kd.render.sampling import sample_along_rays
    from vision3d_kd.render.shading import Shader
    from vision3d_kd.render.volume import RenderConfig, render_rays

    class Fuzzy(torch.nn.Module):  # a ball with a soft edge: many samples of small weight in front of it
        aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
        evaluated = 0

        def density(self, x):
            Fuzzy.evaluated += x.shape[0]
            return 30.0 * torch.sigmoid((0.5 - x.norm(dim=-1)) * 20.0)

        def forward_rays(self, x, d, ray_i):
            return self.density(x), 0.5 + 0.5 * torch.tanh(x)

    g = torch.Generator().manual_seed(0)
    o = torch.randn(64, 3, generator=g)
    o = torch.nn.functional.normalize(o, dim=-1) * 2.5
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g) * 0.15 - o, dim=-1)
    sh = Shader(Fuzzy(), "lambertian", Shading(light_dir=(0.3, 0.2, 1.0), ambient=0.3), fd_step=0.005)
    bg = torch.ones(64, 3)
    outs, counts = {}, {}
    for w_min in (0.0, 1e-2):
        Fuzzy.evaluated = 0
        cfg = RenderConfig(step_size=0.01, opacity_min=0.0, shade_weight_min=w_min)
        outs[w_min] = render_rays(Fuzzy(), o, d, None, bg, cfg, shader=sh)
        counts[w_min] = Fuzzy.evaluated
    s = sample_along_rays(o, d, Fuzzy.aabb, 0.01, None)
    w = composite_weights(Fuzzy().density(s.points), s.t_starts, s.t_ends, s.ray_indices, 64)
    light = torch.zeros(64).index_add_(0, s.ray_indices, torch.where(w < 1e-2, w, 0.0))
    diff = (outs[1e-2]["rgb"] - outs[0.0]["rgb"]).abs().amax(-1)
    assert (diff <= light + 1e-5).all() and diff.max() > 1e-4  # it changes something, within the bound
    assert counts[1e-2] < 0.8 * counts[0.0]  # normals of the light samples were not evaluated
    x = torch.tensor([[0.0, 0.0, 0.9]]).expand(3, 3)  # masked-out samples face their camera: n = −d, no penalty
    rgb, pen = sh(x, Fuzzy().density(x), torch.full((3, 3), 0.8), -torch.eye(3), torch.arange(3),
                  torch.zeros(3, dtype=torch.bool))
    assert torch.allclose(rgb, sh.shading.shade(torch.full((3, 3), 0.8), torch.eye(3)))
    assert not pen["orientation"].any()


@pytest.mark.parametrize("args,name", [
    (["generate", "  ", "--out", "X"], "prompt"),
    (["generate", "a mug", "--method", "xyz", "--out", "X"], "xyz"),
    (["generate", "a mug", "--set", "guidance.guidance_scale=nan", "--out", "X"], "guidance_scale"),
    (["generate", "a mug", "--set", "generate.steps=0", "--out", "X"], "steps"),
    (["generate", "a mug", "--set", "generate.nope=1", "--out", "X"], "nope"),
    (["generate", "a mug", "--prior", "/nonexistent/prior", "--out", "X"], "/nonexistent/prior"),
    (["generate", "a mug", "--resume", "--out", "X"], "resume"),
])
def test_bad_generate_input_gives_one_line_errors(args, name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(args) == 2
    one_line_error(capsys, name)
    assert not (tmp_path / "X" / "weights.safetensors").exists()



def fixed_guidance_residual(run, prior, prompt: str) -> float:
    """Mean SDS residual ‖w(t)(ε̂ − ε)‖ of a run's renders on 4 fixed cameras, t in {300, 600}, fixed noise."""
    from vision3d_kd.cameras import cameras_from_spherical
    from vision3d_kd.guidance.prior import CameraCondition
    from vision3d_kd.guidance.prompts import ViewPrompts
    from vision3d_kd.guidance.sds import SDS, GuidanceConfig
    from vision3d_kd.render.image import render
    from vision3d_kd.runs import load_run, render_settings_from

    model, grid, cfg = load_run(run)
    el, az, r = torch.full((4,), 15.0), torch.tensor([0.0, 90.0, 180.0, 270.0]), torch.full((4,), 3.5)
    cams = cameras_from_spherical(el, az, r, torch.full((4,), 40.0), prior.image_size, prior.image_size)
    images = torch.stack([render(model, cams, i, grid, render_settings_from(cfg))["rgb"] for i in range(4)])
    camera = CameraCondition(el, az, r)
    emb = ViewPrompts(prior, prompt).for_cameras(camera)
    sds = SDS(prior, GuidanceConfig(guidance_scale=30.0))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = prior.encode(images.permute(0, 3, 1, 2))
        total = 0.0
        for t in (300, 600):
            noise = torch.randn(z.shape, generator=gen)
            tt = torch.full((4,), t)
            total += float(sds.gradient(z, prior.add_noise(z, noise, tt), noise, tt, emb, camera).norm())
    return total / 2


def test_a_short_run_with_the_bundled_prior_makes_the_red_ball(tmp_path):
    """The main job on the shipped prior (vision3d_kd/assets/prior): 150 SDS steps make a ball of the right size and
    colour, and the guidance residual on fixed cameras, timesteps and noise drops from the first step's."""
    from vision3d_kd.assets import ASSETS_DIR
    from vision3d_kd.data.objects import ObjectSpec
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.loop import generate
    from vision3d_kd.generation.scoring import score_run
    from vision3d_kd.guidance.diffusers_prior import DiffusersPrior
    from vision3d_kd.runs import load_run, render_settings_from

    bundled = ASSETS_DIR / "prior"
    if not (bundled / "model_index.json").is_file():
        pytest.skip(f"{bundled}: the bundled prior is not in this checkout")
    prior = DiffusersPrior(bundled)
    for steps in (1, 150):
        setup = load_generate_config("sds", None, [f"generate.steps={steps}", "guidance.guidance_scale=30"])
        generate("a red ball", tmp_path / str(steps), setup, prior, show_progress=False)
    before = fixed_guidance_residual(tmp_path / "1", prior, "a red ball")
    after = fixed_guidance_residual(tmp_path / "150", prior, "a red ball")
    assert after < 0.8 * before, (before, after)
    model, grid, cfg = load_run(tmp_path / "150")
    score = score_run(model, grid, render_settings_from(cfg), cfg["render"], ObjectSpec("sphere", "red"))
    assert score["iou"] > 0.7 and score["colour_error"] < 0.2, score


def test_resume_uses_the_saved_settings_and_checks_the_prompt(sd_pipe, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--prior", str(sd_pipe), "--out", str(out), "--no-mesh", "--no-video", "--quiet"]
    assert run_cli(["generate", "a red mug", "--steps", "2", "--set", "generate.size=32", *base]) == 0
    capsys.readouterr()
    assert run_cli(["generate", "a blue ball", "--resume", *base]) == 2
    one_line_error(capsys, "a red mug")
    # the saved settings win over the flags: 2 steps were asked for and done, nothing more happens
    assert run_cli(["generate", "a red mug", "--resume", "--steps", "50", *base]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    capsys.readouterr()
    assert run_cli(["generate", "a red mug", *base]) == 2  # refuses to overwrite a run
    one_line_error(capsys, "already holds a run")


@pytest.mark.parametrize("student", ["mlp", "grid", "tensorf-vm"])
def test_other_field_families_can_be_the_student(sd_pipe, tmp_path, student):
    """The family is the blob's inner field, and SDS trains every one of its tensors: the same seeded run
    stopped after 1 and after 3 steps differs in each (a tensor left out of the optimiser stays equal)."""
    from vision3d_kd.checkpoint import load_tensors, read_config
    from vision3d_kd.runs import load_run

    runs = {}
    for steps in (1, 3):
        out = runs[steps] = tmp_path / f"{student}-{steps}"
        assert run_cli(["generate", "a red mug", "--student", student, "--steps", str(steps), "--prior",
                        str(sd_pipe), "--out", str(out), "--no-mesh", "--no-video", "--quiet",
                        "--set", "generate.size=32"]) == 0
    assert read_config(runs[3])["field"]["inner"]["field"] == student
    a, b = (load_tensors(runs[s] / "weights.safetensors") for s in (1, 3))
    model, _, _ = load_run(runs[3])
    inner = [k for k, p in model.named_parameters() if k.startswith("inner.") and p.requires_grad]  # no buffers
    assert inner and a.keys() == b.keys()
    assert [k for k in inner if torch.equal(a[k], b[k])] == []
