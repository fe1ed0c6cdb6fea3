"""LucidDreaming: clipped rays, object-centric blobs, objects seen in their own frame, splats per box, the loop
end to end on a tiny Stable-Diffusion-style pipeline (fields and splats, the whole-scene pass, resume) and the
true composition of a layout (`v3kd data scene --layout`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import one_line_error, run_cli
from vision3d_kd.data.layout import Layout, LayoutObject

TWO = Layout((LayoutObject("a red mug", (-0.8, -1.8, -0.8, 0.8, -0.2, 0.8)),
              LayoutObject("a blue cube", (-0.6, 0.4, -0.6, 0.6, 1.6, 0.6))))


def two_blobs():
    from vision3d_kd.fields import BlobField

    inner = {"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 2, "log2_table_size": 10,
             "max_resolution": 32}
    torch.manual_seed(0)
    return BlobField(inner=inner, boxes=[list(o.box) for o in TWO.objects]).eval()


def test_clipped_rays_sample_only_inside_their_box_on_both_marchers(monkeypatch):
    from vision3d_kd.render.sampling import sample_along_rays

    gen = torch.Generator().manual_seed(0)
    o = torch.randn(500, 3, generator=gen) * 0.3 + torch.tensor([4.0, 0.0, 0.5])
    d = torch.tensor([-4.0, 0.0, -0.5]) + torch.randn(500, 3, generator=gen) * 0.4
    d = torch.nn.functional.normalize(d, dim=-1)
    aabb = torch.tensor([[-2.0] * 3, [2.0] * 3])
    box = torch.tensor([[-0.6, 0.4, -0.6], [0.6, 1.6, 0.6]])
    runs = []
    for no_ext in ("1", "0"):
        monkeypatch.setenv("V3KD_NO_EXT", no_ext)
        s = sample_along_rays(o, d, aabb, 0.02, clip=box)
        assert len(s) > 100
        assert ((s.points >= box[0] - 1e-5) & (s.points <= box[1] + 1e-5)).all()
        runs.append(s)
    assert torch.equal(runs[0].ray_indices, runs[1].ray_indices)
    assert torch.allclose(runs[0].t_starts, runs[1].t_starts, atol=1e-5)
    full = sample_along_rays(o, d, aabb, 0.02)
    inside = ((full.points >= box[0]) & (full.points <= box[1])).all(-1)
    assert abs(int(inside.sum()) - len(runs[0])) <= 0.02 * len(runs[0])  # the same samples, no more


def test_object_centric_blobs_sit_in_their_boxes_and_are_saved_with_the_field():
    from vision3d_kd.errors import ConfigError
    from vision3d_kd.fields import BlobField, build_field

    f = two_blobs()
    for o in TWO.objects:
        c = torch.tensor([o.centre])
        assert float(f.bias(c)) == pytest.approx(10.0)
        edge = c + torch.tensor([[0.625 * 0.5 * o.sides[0], 0.0, 0.0]])  # ‖(p − c) ⊘ (r s)‖ = σ = 0.5
        assert float(f.bias(edge)) == pytest.approx(0.0, abs=1e-4)
    assert float(f.bias(torch.tensor([[0.0, -0.1, 1.8]]))) < -5  # between and above the boxes: empty
    again = build_field(f.to_dict())
    x = torch.rand(100, 3) * 4 - 2
    assert torch.allclose(again.bias(x), f.bias(x))
    with pytest.raises(ConfigError):
        BlobField(inner={"field": "hashgrid"}, boxes=[[0, 0, 0, 0, 1, 1]])


def test_an_object_seen_in_its_own_frame_matches_its_clipped_object_camera():
    from vision3d_kd.cameras import cameras_from_spherical, image_rays
    from vision3d_kd.fields.placed import PlacedField
    from vision3d_kd.render.volume import RenderConfig, render_rays_chunked

    f = two_blobs()
    obj = TWO.objects[0]
    box = torch.tensor([obj.lo, obj.hi])
    el, az = torch.tensor([20.0]), torch.tensor([30.0])
    world = cameras_from_spherical(el, az, torch.tensor([3.5 * obj.scale]), torch.tensor([40.0]), 24, 24, obj.centre)
    canon = cameras_from_spherical(el, az, torch.tensor([3.5]), torch.tensor([40.0]), 24, 24)
    o, d = image_rays(world, 0)
    bg = torch.ones(len(o), 3)
    a = render_rays_chunked(f, o, d, None, bg, RenderConfig(step_size=0.004, opacity_min=0.0), clip=box)
    view = PlacedField(f, torch.tensor(obj.centre), obj.scale, box)
    o2, d2 = image_rays(canon, 0)
    b = render_rays_chunked(view, o2, d2, None, bg, RenderConfig(step_size=0.004 / obj.scale, opacity_min=0.0))
    assert a["opacity"].max() > 0.9 and (a["opacity"] - b["opacity"]).abs().max() < 0.02
    assert (a["rgb"] - b["rgb"]).abs().max() < 0.02
    # clipped to the other box: the mug's blob neither shows nor occludes
    other = torch.tensor([TWO.objects[1].lo, TWO.objects[1].hi])
    c = render_rays_chunked(f, o, d, None, bg, RenderConfig(step_size=0.004, opacity_min=0.0), clip=other)
    assert c["opacity"].max() < 1e-3
    # with the run's occupancy: cells marked empty hold no density (all, none, the upper half)
    def seen(occupied):
        placed = PlacedField(f, torch.tensor(obj.centre), obj.scale, box, occupied)
        return render_rays_chunked(placed, o2, d2, None, bg, RenderConfig(step_size=0.004 / obj.scale,
                                                                          opacity_min=0.0))["opacity"]

    assert (seen(lambda w: torch.ones(len(w), dtype=torch.bool)) - b["opacity"]).abs().max() < 1e-6
    assert seen(lambda w: torch.zeros(len(w), dtype=torch.bool)).max() == 0.0
    lower = seen(lambda w: w[:, 2] < obj.centre[2])
    assert (lower <= b["opacity"] + 1e-6).all() and 0.2 < lower.sum() / b["opacity"].sum() < 0.8


def test_a_splat_gets_an_objects_gradient_only_when_its_centre_is_in_that_box():
    from vision3d_kd.cameras import cameras_from_spherical
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.students import SplatStudent

    setup = load_generate_config("sds", None, ["generate.student=splats", "generate.splats=400", "generate.aabb=2"])
    s = SplatStudent(setup, torch.device("cpu"), torch.Generator().manual_seed(0), [list(o.box) for o in TWO.objects])
    means = s.model.means.detach()
    for o in TWO.objects:  # an equal share starts inside each box
        assert int(((means >= torch.tensor(o.lo)) & (means <= torch.tensor(o.hi))).all(-1).sum()) == 200
    obj = TWO.objects[1]
    box = torch.tensor([obj.lo, obj.hi])
    cams = cameras_from_spherical(torch.tensor([15.0]), torch.tensor([0.0]), torch.tensor([3.0]),
                                  torch.tensor([40.0]), 32, 32, obj.centre)
    out = s.render(cams, 0, None, torch.Generator(), clip=box)
    (1.0 - out["rgb"]).sum().backward()
    inside = ((means >= box[0]) & (means <= box[1])).all(-1)
    g = s.model.opacity_logits.grad
    assert (g[~inside] == 0).all() and (g[inside] != 0).any()


def test_objects_share_no_hash_entries_with_box_tables():
    """A point in box k reads (and its loss writes) box k's table only; points outside every box the main one."""
    from vision3d_kd.errors import ConfigError
    from vision3d_kd.fields import build_field
    from vision3d_kd.kernels import hash_encode

    cfg = {"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 4, "log2_table_size": 8,
           "max_resolution": 64, "box_tables": [list(o.box) for o in TWO.objects]}
    torch.manual_seed(0)
    f = build_field(cfg)
    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(1)) * 4 - 2
    idx = f.table_index(x)
    assert set(torch.bincount(idx).tolist()) and (torch.bincount(idx, minlength=3) > 0).all()
    feat = f.encode(x)
    width = 4 * f.config.n_features
    for k, table in enumerate(f.tables()):  # each point's features are its own table's, then its one-hot
        m = idx == k
        assert torch.allclose(feat[m, :width], hash_encode(f.normalize(x[m]), table, f.resolutions))
        assert (feat[m, width:] == torch.eye(3)[k]).all()
    sigma, rgb = f(x[idx == 2])  # a loss on the blue cube's points only
    (sigma.sum() + rgb.sum()).backward()
    grads = [t.grad for t in f.tables()]
    assert grads[0] is None or (grads[0] == 0).all()
    assert grads[1] is None or (grads[1] == 0).all()
    assert (grads[2] != 0).any()
    again = build_field(f.to_dict())  # saved with the field's config: a run reloads with its tables
    again.load_state_dict(f.state_dict())
    assert torch.equal(again.encode(x), feat)
    blob = build_field({"field": "blob", "inner": cfg, "start_levels": 1})  # locked levels zeroed, the one-hot kept
    masked = blob.encode(x)
    assert (masked[:, f.config.n_features:width] == 0).all() and torch.equal(masked[:, width:], feat[:, width:])
    boxes = cfg["box_tables"]
    empty = build_field({"field": "blob", "inner": cfg, "boxes": boxes, "empty_outside": True})
    full = build_field({"field": "blob", "inner": cfg, "boxes": boxes})
    full.load_state_dict(empty.state_dict())
    with torch.no_grad():  # no density outside every box (the paper's −∞), the same inside
        assert (empty.density(x[idx == 0]) == 0).all() and (full.density(x[idx == 0]) > 0).all()
        assert torch.equal(empty.density(x[idx > 0]), full.density(x[idx > 0]))
    with pytest.raises(ConfigError, match="box_tables"):
        build_field({**cfg, "box_tables": [[0, 0, 0, 0, 1, 1]]})


def test_each_box_has_a_colour_head_of_its_own_with_box_heads():
    """With box_heads a point's colour comes from its table's colour head alone (a loss on one object's colours
    moves only that head), the same head through the blob and the packed-ray path, and the field reloads."""
    from vision3d_kd.fields import build_field

    cfg = {"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 4, "log2_table_size": 8,
           "max_resolution": 64, "box_tables": [list(o.box) for o in TWO.objects], "box_heads": True}
    torch.manual_seed(0)
    f = build_field(cfg)
    assert len(f.box_color_nets) == 2 and f.geo_features == f.config.geo_features + 3
    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(1)) * 4 - 2
    d = torch.nn.functional.normalize(torch.randn(4000, 3, generator=torch.Generator().manual_seed(2)), dim=-1)
    idx = f.table_index(x)
    sigma, rgb = f(x, d)
    heads = [f.color_net, *f.box_color_nets]
    _, geo = f.density_head(f.encode(x))
    for k, head in enumerate(heads):  # each point's colour is its own head's
        m = idx == k
        want = head(torch.cat([geo[m, :-3], f.encode_dirs(d[m])], dim=-1))
        assert torch.allclose(rgb[m], want, atol=1e-6)
        assert not torch.allclose(rgb[m], heads[(k + 1) % 3](torch.cat([geo[m, :-3], f.encode_dirs(d[m])], -1)))
    rays_i = torch.arange(4000)
    assert torch.allclose(f.forward_rays(x, d, rays_i)[1], rgb, atol=1e-6)
    f.zero_grad()
    f(x[idx == 1], d[idx == 1])[1].sum().backward()  # a colour loss on the red mug's points only
    moved = [any(p.grad is not None and (p.grad != 0).any() for p in h.parameters()) for h in heads]
    assert moved == [False, True, False]
    again = build_field(f.to_dict())
    again.load_state_dict(f.state_dict())
    assert torch.equal(again(x, d)[1], rgb)
    blob = build_field({"field": "blob", "inner": cfg, "boxes": cfg["box_tables"], "empty_outside": True})
    inner = blob.inner
    with torch.no_grad():
        b_rgb = blob(x, d)[1]
        _, b_geo = blob._preactivation(x)
    for k, head in enumerate([inner.color_net, *inner.box_color_nets]):
        m = idx == k
        assert torch.allclose(b_rgb[m], head(torch.cat([b_geo[m, :-3], inner.encode_dirs(d[m])], -1)), atol=1e-6)
    plain = build_field({**cfg, "box_heads": False})  # the option off: one head, geo of the block width
    assert len(plain.box_color_nets) == 0 and plain.geo_features == plain.config.geo_features
    assert build_field({**cfg, "box_tables": []}).geo_features == plain.config.geo_features  # no boxes: no heads


SMALL_HASH = ["field.log2_table_size=12", "field.n_levels=4", "field.max_resolution=64"]
FAST = ["--set", "generate.size=32", "--set", "generate.mesh_resolution=48", "--set", "generate.video_frames=4",
        "--set", "generate.video_size=32", "--set", "generate.checkpoint_every=2", "--quiet"]


@pytest.mark.parametrize("student", ["hashgrid", "grid", "splats"])
def test_a_layout_generates_end_to_end_with_the_whole_scene_pass(sd_pipe, tmp_path, student, capsys):
    layout = TWO.write(tmp_path / "layout.json")
    out = tmp_path / "run"
    small = {"hashgrid": SMALL_HASH,
             "grid": ["field.resolution=32"], "splats": ["generate.splats=600"]}[student]
    args = ["generate", "--layout", str(layout), "--prior", str(sd_pipe), "--out", str(out), "--student", student,
            "--set", "generate.harmonise=0.5", "--set", "generate.log_every=1", "--steps", "4", *FAST,
            "--set", "generate.occ_resolution=16", *[x for kv in small for x in ("--set", kv)]]
    assert run_cli(args) == 0
    assert "2 objects" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layout"] == TWO.to_dict() and json.loads((out / "layout.json").read_text()) == TWO.to_dict()
    assert cfg["prompt"] == "a red mug and a blue cube" and cfg["render"]["radius"] > 5  # frames both boxes
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    terms = {r["step"]: r.get("terms", 1) for r in log if "loss" in r}
    assert terms == {1: 2, 2: 2, 3: 3, 4: 3}, terms  # 2 objects, then + the whole scene over the last half
    assert all(math.isfinite(r["loss"]) for r in log if "loss" in r)
    assert (out / "mesh.glb").is_file() and (out / "turntable.mp4").is_file()
    from vision3d_kd.bench.lucid import glb_objects

    assert glb_objects(out / "mesh.glb", TWO) == [True, True]  # the GLB, read back, shows both objects
    other = Layout((TWO.objects[0], LayoutObject("a blue cube", (-0.6, 0.5, -0.6, 0.6, 1.7, 0.6))))  # moved
    assert run_cli(["generate", "--layout", str(other.write(tmp_path / "o.json")), "--prior", str(sd_pipe), "--out",
                    str(out), "--steps", "6", "--resume", "--quiet"]) == 2
    one_line_error(capsys, "another layout")


@pytest.mark.parametrize("method", ["vsd", "bsd"])
def test_every_guidance_composes_a_layout(sd_pipe, tmp_path, method):
    """VSD (its LoRA trained on every object's renders) and BSD take one term per object too."""
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.loop import generate
    from vision3d_kd.guidance.diffusers_prior import DiffusersPrior

    setup = load_generate_config(method, None, ["generate.steps=2", "generate.size=32", "generate.log_every=1",
                                                "generate.occ_resolution=16", *SMALL_HASH])
    m = generate("scene", tmp_path / method, setup, DiffusersPrior(sd_pipe), show_progress=False, layout=TWO)
    log = [json.loads(line) for line in (tmp_path / method / "log.jsonl").read_text().splitlines()]
    assert m["steps"] == 2 and all(r.get("terms") == 2 and math.isfinite(r["loss"]) for r in log if "loss" in r)
    if method == "vsd":
        assert all(math.isfinite(r["lora_loss"]) for r in log if "loss" in r)


def test_an_interrupted_layout_run_resumes_to_the_same_weights(sd_pipe, tmp_path):
    from vision3d_kd.checkpoint import load_tensors
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.loop import generate
    from vision3d_kd.guidance.diffusers_prior import DiffusersPrior

    prior = DiffusersPrior(sd_pipe)
    setup = load_generate_config("sds", None, ["generate.steps=5", "generate.size=32", "generate.checkpoint_every=2",
                                               "generate.occ_resolution=16", *SMALL_HASH])

    class Crash(Exception):
        pass

    def crash_at_3(step, rec):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        generate("scene", tmp_path / "a", setup, prior, show_progress=False, callback=crash_at_3, layout=TWO)
    resumed = generate("scene", tmp_path / "a", setup, prior, resume=True, show_progress=False, layout=TWO)
    straight = generate("scene", tmp_path / "b", setup, prior, show_progress=False, layout=TWO)
    assert resumed["steps"] == straight["steps"] == 5
    wa, wb = load_tensors(tmp_path / "a" / "weights.safetensors"), load_tensors(tmp_path / "b" / "weights.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wb)


def test_the_student_is_sized_to_the_layout():
    from vision3d_kd.errors import ConfigError
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.lucid import baseline_setup, layout_setup, scene_ratio

    setup = load_generate_config("sds")
    big = layout_setup(setup, TWO)
    ratio = scene_ratio(setup, TWO)
    assert ratio == pytest.approx(1.8 / 0.6)
    assert big.generate.aabb == pytest.approx(1.8 * 1.02) and big.generate.step_size == pytest.approx(0.02 * 0.6)
    assert big.field["max_resolution"] == round(256 * ratio)
    # a table per box of a lone object's size; without box tables one table grows (at most 2^19)
    assert big.field["box_tables"] == [list(o.box) for o in TWO.objects] and big.field["log2_table_size"] == 16
    assert big.field["box_heads"] is True  # and a colour head per box
    one_head = load_generate_config("sds", None, ["generate.box_heads=false"])
    assert layout_setup(one_head, TWO).field["box_heads"] is False
    assert big.field["box_density_heads"] is True  # and a density MLP per box
    shared_mlp = load_generate_config("sds", None, ["generate.box_density_heads=false"])
    assert layout_setup(shared_mlp, TWO).field["box_density_heads"] is False
    shared = load_generate_config("sds", None, ["generate.box_tables=false"])
    assert layout_setup(shared, TWO).field["log2_table_size"] == 19
    assert "box_tables" not in layout_setup(shared, TWO).field and "box_tables" not in baseline_setup(setup, TWO).field
    assert big.generate.occ_resolution == 128 and setup.generate.aabb == 1.0  # the given setup is unchanged
    lone = Layout((LayoutObject("a red mug", (-1, -1, -1, 1, 1, 1)),))
    assert layout_setup(shared, lone).field == shared.field  # a lone unit object: a single generation's student
    # layouts prune light samples and shade only heavy ones (bench/TUNING.md); one object does neither
    assert (big.generate.opacity_min, big.generate.shade_weight_min) == (1e-4, 1e-3)
    assert (setup.generate.opacity_min, setup.generate.shade_weight_min) == (None, None)
    mine = load_generate_config("sds", None, ["generate.opacity_min=0", "generate.shade_weight_min=0.01"])
    given = layout_setup(mine, TWO).generate
    assert (given.opacity_min, given.shade_weight_min) == (0, 0.01)
    with pytest.raises(ConfigError, match="shade_weight_min"):
        load_generate_config("sds", None, ["generate.shade_weight_min=1.5"])


def test_the_true_composition_is_rendered_with_its_layout(tmp_path, capsys):
    from vision3d_kd.generation.layout_truth import mass_in_boxes, truth_scene

    scene = truth_scene(TWO)
    assert len(scene.primitives) == 3  # mug body + handle, cube
    for o in TWO.objects:  # every object is inside its box, touching it on its shortest side
        c = torch.tensor([o.centre])
        assert float(scene.sdf(c)) < 0
    path = TWO.write(tmp_path / "l.json")
    assert run_cli(["data", "scene", "--layout", str(path), "--out", str(tmp_path / "s"), "--n-train", "2",
                    "--n-test", "1", "--size", "24"]) == 0
    meta = json.loads((tmp_path / "s" / "transforms_test.json").read_text())
    cam = torch.tensor(meta["frames"][0]["transform_matrix"])[:3, 3]
    assert float(cam.norm()) == pytest.approx(4 * 1.97, rel=1e-3)  # 4 x the scene's half side (padded box)
    assert json.loads((tmp_path / "s" / "layout.json").read_text()) == TWO.to_dict()
    bad = Layout((LayoutObject("a cow", (0, 0, 0, 1, 1, 1)),)).write(tmp_path / "cow.json")
    assert run_cli(["data", "scene", "--layout", str(bad), "--out", str(tmp_path / "s2")]) == 2
    one_line_error(capsys, "object 1")
    assert not (tmp_path / "s2").exists()
    # all of the blobs' mass lies in their boxes; a single ball at the origin puts most of it outside them
    assert min(mass_in_boxes(two_blobs(), TWO, 48)) > 0.99
    from vision3d_kd.fields import BlobField

    ball = BlobField(inner={"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 2,
                            "log2_table_size": 10}, blob_radius=1.2).eval()
    assert max(mass_in_boxes(ball, TWO, 48)) < 0.6


def _two_object_run(path, second, soften: bool):
    """A grid-field run (`analytic_run`) of a dense sphere at x = −0.5 and `second` (primitives at x ≈ 0.7),
    the latter's density made soft (a shallow ramp peaking near 17, a fifteenth of the sphere's) when `soften`."""
    from tests.conftest import analytic_run
    from vision3d_kd.data.sdf import SDFScene, Sphere
    from vision3d_kd.runs import load_field, save_field

    run = analytic_run(path, SDFScene("two", [Sphere((-0.5, 0.0, 0.0), 0.5), *second]), res=64)
    if soften:
        field, cfg = load_field(run)
        with torch.no_grad():  # grid axes z, y, x: everything with x > 0.2 is the second object
            soft = (torch.linspace(-1.5, 1.5, 64) > 0.2).reshape(1, 1, 64, 1).expand_as(field.density_grid)
            shift = field.density_shift
            raw = field.density_grid + shift  # about 4 per voxel into the surface; −30 in empty space
            soft = soft & (raw > -8.0)  # the object only: empty space stays empty, not fog
            field.density_grid[soft] = (raw[soft] * 0.15).clamp(max=0.0) - shift
        save_field(run, field, {k: v for k, v in cfg.items() if k != "field"})
    return run


@pytest.mark.parametrize("case", ["soft", "in pieces"])
def test_a_layouts_mesh_keeps_every_object_by_judging_each_box_on_its_own(case, tmp_path):
    """Beside a dense sphere, an object in small pieces (each under 5 % of the sphere: floaters by the scene's
    measure) vanishes from a mesh made for the whole scene, and a soft one (its density never reaches the
    scene's one iso-level) shrinks to what no view reaches; with the layout's boxes, each box gets its own
    level and its own floater test, and the object is kept at its size. (A generated layout lost a soft,
    broken-up donut this way.)"""
    from vision3d_kd.data.sdf import Sphere
    from vision3d_kd.export.run_mesh import MeshConfig, mesh_from_run

    second = [Sphere((0.7, 0.0, 0.0), 0.3)] if case == "soft" else [
        Sphere((0.7, y, 0.0), 0.09) for y in (-0.25, 0.0, 0.25)]
    run = _two_object_run(tmp_path / "run", second, soften=case == "soft")
    boxes = ((-1.1, -0.6, -0.6, 0.1, 0.6, 0.6), (0.3, -0.45, -0.45, 1.1, 0.45, 0.45))
    one = mesh_from_run(run, MeshConfig(resolution=64, views=8))
    per_box = mesh_from_run(run, MeshConfig(resolution=64, views=8, boxes=boxes))
    def in_box(v, b):  # vertices inside a box (the mesh also closes a few unseen corners of the scene box)
        return v[((v >= np.asarray(b[:3])) & (v <= np.asarray(b[3:]))).all(axis=1)]

    def radius(v):  # mean distance of vertices from the second object's centre
        return float(np.linalg.norm(v - np.array([0.7, 0.0, 0.0]), axis=1).mean())

    lost = in_box(one.vertices, boxes[1])  # gone, or only the core no view sees (forced solid) is left
    small, big = in_box(per_box.vertices, boxes[1]), in_box(per_box.vertices, boxes[0])
    assert len(in_box(one.vertices, boxes[0])) > 100 and len(small) > 30
    assert abs(float(abs(big[:, 1]).max()) - 0.5) < 0.08
    if case == "soft":  # one level puts its surface inside it; its own level, at its size (radius 0.3)
        assert abs(radius(small) - 0.3) < 0.06 and (len(lost) == 0 or radius(lost) < radius(small) - 0.02)
    else:  # three spheres of radius 0.09 at y = 0, ±0.25
        assert len(lost) == 0 and abs(float(abs(small[:, 1]).max()) - 0.34) < 0.06
