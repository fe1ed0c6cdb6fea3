"""LucidDreaming's object-centric blobs (`fields/blob.py` with boxes): each box's own ellipsoid, with
`scale_box_density` the same optical depth through every object's centre whatever its box's size (with
`box_density_largest`, the largest box's peak kept), and `generate.box_steps`' marching step per object."""

from __future__ import annotations

import pytest
import torch

from vision3d_kd.fields import build_field
from vision3d_kd.fields.base import box_scales

from .test_lucid import TWO

INNER = {"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 2, "log2_table_size": 8,
         "max_resolution": 16, "init_scale": 0.0}
BOXES = [[-1.5, -0.5, -0.5, -0.5, 0.5, 0.5],  # a cube of side 1: scale 0.5
         [1.0, -0.2, -0.2, 1.4, 0.2, 0.2]]  # a cube of side 0.4: scale 0.2


def _depth_through_centre(field, box) -> float:
    """∫ max(b, 0) dx along the x line through the box's centre, over the box (world units)."""
    lo, hi = box[0], box[3]
    x = torch.linspace(lo, hi, 4001)
    pts = torch.stack([x, torch.full_like(x, 0.5 * (box[1] + box[4])), torch.full_like(x, 0.5 * (box[2] + box[5]))], 1)
    with torch.no_grad():
        b = field.bias(pts).clamp_min(0)
    return float(torch.trapezoid(b, x))


@pytest.mark.parametrize("scaled", [False, True])
def test_box_blob_peaks_and_depths(scaled):
    f = build_field({"field": "blob", "inner": INNER, "boxes": BOXES, "blob_density": 10.0, "blob_radius": 0.5,
                     "scale_box_density": scaled})
    centres = torch.tensor([[-1.0, 0.0, 0.0], [1.2, 0.0, 0.0]])  # the boxes' centres
    with torch.no_grad():
        peaks = f.bias(centres)
    scales = torch.tensor([0.5, 0.2])
    want = 10.0 / scales if scaled else torch.full((2,), 10.0)
    assert torch.allclose(peaks, want, rtol=1e-5)
    big, small = (_depth_through_centre(f, b) for b in BOXES)
    # the blob's semi-axis is a = 0.625 · 0.5 · side = 0.625 s; the positive part of the cone holds λ_k · a
    if scaled:  # λ_k = 10 / s: 6.25 through every object, whatever its size
        assert big == pytest.approx(6.25, rel=1e-3) and small == pytest.approx(6.25, rel=1e-3)
    else:  # λ = 10: the small object's blob is s times thinner (0.625 · 10 · s)
        assert big == pytest.approx(3.125, rel=1e-3) and small == pytest.approx(1.25, rel=1e-3)


def test_relative_box_density_keeps_the_largest_objects_peak():
    f = build_field({"field": "blob", "inner": INNER, "boxes": BOXES, "scale_box_density": True,
                     "box_density_largest": True})
    with torch.no_grad():  # scales 0.5 and 0.2: peaks 10 and 10 · 0.5 / 0.2
        assert torch.allclose(f.bias(torch.tensor([[-1.0, 0.0, 0.0], [1.2, 0.0, 0.0]])), torch.tensor([10.0, 25.0]))
    assert _depth_through_centre(f, BOXES[1]) == pytest.approx(6.25 * 0.5, rel=1e-3)  # 0.625 · 25 · 0.2


def test_scaled_box_density_is_off_by_default_and_saved_in_the_config():
    f = build_field({"field": "blob", "inner": INNER, "boxes": BOXES})
    assert f.config.scale_box_density is False and f.box_peak is None
    g = build_field({"field": "blob", "inner": INNER, "boxes": BOXES, "scale_box_density": True})
    assert build_field(g.to_dict()).box_peak is not None


@pytest.mark.parametrize("option", ["", "box_steps", "box_own_scale"])
def test_box_steps_march_each_object_at_its_lone_step(option, monkeypatch):
    """With generate.box_steps an object's clipped rays use the step × min(s_k, 1) / min(s_min, 1): the large
    box's object (scale 0.5) is marched 2.5 times coarser than the small one's (0.2); with box_own_scale its
    normals' finite-difference step too; whole-scene rays and the default keep the layout's step."""
    from vision3d_kd.cameras import cameras_from_spherical
    from vision3d_kd.generation import students
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.render.shading import Shader

    small = [f"field.{k}={v}" for k, v in INNER.items() if k not in ("field", "aabb")]
    sets = [f"generate.{option}=true"] if option else []
    setup = load_generate_config("sds", None, ["generate.aabb=2", "generate.step_size=0.01", *sets, *small])
    s = students.FieldStudent(setup, torch.device("cpu"), BOXES)
    steps, fd = [], []
    real = students.render_rays

    def spy(*args, **kwargs):
        steps.append(args[5].step_size)
        fd.append(kwargs["shader"].fd_step)
        return real(*args, **kwargs)

    monkeypatch.setattr(students, "render_rays", spy)
    cams = cameras_from_spherical(torch.tensor([15.0]), torch.tensor([0.0]), torch.tensor([3.0]),
                                  torch.tensor([40.0]), 8, 8, (0.0, 0.0, 0.0))
    shader = Shader(None, "lambertian", fd_step=0.005)
    for box in BOXES:
        out = s.render(cams, 0, shader, torch.Generator(), clip=torch.tensor(box).reshape(2, 3))
        assert out["rgb"].shape == (8, 8, 3)
    s.render(cams, 0, shader, torch.Generator())
    want = [0.025, 0.01, 0.01] if option else [0.01, 0.01, 0.01]
    assert steps == pytest.approx(want)
    assert fd == pytest.approx([0.0125, 0.005, 0.005] if option == "box_own_scale" else [0.005] * 3)
    assert shader.fd_step == 0.005  # the step's shader is not changed for the other objects


@pytest.mark.parametrize("sets", [[], ["generate.box_blob_scaled=false"]])
def test_a_layout_student_scales_its_box_blobs_by_default(sets):
    """A layout's field student starts each box's blob at λ / s_k unless generate.box_blob_scaled=false
    (bench/TUNING.md: chosen with a density MLP per box on validation layouts 3 and 7)."""
    from vision3d_kd.generation import students
    from vision3d_kd.generation.config import load_generate_config

    small = [f"field.{k}={v}" for k, v in INNER.items() if k not in ("field", "aabb")]
    setup = load_generate_config("sds", None, ["generate.aabb=2", *small, *sets])
    blob = students.FieldStudent(setup, torch.device("cpu"), BOXES).model
    if sets:
        assert blob.box_peak is None
    else:
        assert blob.config.scale_box_density and torch.allclose(blob.box_peak, 10.0 / box_scales(BOXES).float())


def test_each_box_has_a_density_mlp_of_its_own_with_box_density_heads():
    """With box_density_heads a point's density comes from its table's density MLP on its hash features
    alone (a density loss on one object's points moves only that MLP and that table), through the blob too,
    the one-hot still picks the colour head, and the field reloads; off, one MLP reads features + one-hot."""
    from vision3d_kd.fields import build_field

    cfg = {"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 4, "log2_table_size": 8,
           "max_resolution": 64, "box_tables": [list(o.box) for o in TWO.objects], "box_heads": True,
           "box_density_heads": True}
    torch.manual_seed(0)
    f = build_field(cfg)
    nets = [f.density_net, *f.box_density_nets]
    assert len(nets) == 3 and all(n[0].in_features == 4 * 2 for n in nets)
    x = torch.rand(4000, 3, generator=torch.Generator().manual_seed(1)) * 4 - 2
    idx = f.table_index(x)
    assert all((idx == k).sum() > 50 for k in range(3))
    feat = f.encode(x)
    log_sigma, geo = f.log_density_head(feat)
    for k, net in enumerate(nets):  # each point's density and geometry are its own MLP's
        m = idx == k
        raw = net(feat[m, :8])
        assert torch.allclose(log_sigma[m], raw[:, 0], atol=1e-6) and torch.allclose(geo[m, :-3], raw[:, 1:], atol=1e-6)
        assert torch.equal(geo[m, -3:].argmax(dim=1), idx[m])  # the one-hot rides on to the colour heads
        assert not torch.allclose(log_sigma[m], nets[(k + 1) % 3](feat[m, :8])[:, 0])
    f.zero_grad()
    f.density(x[idx == 2]).sum().backward()  # a density loss on the blue cube's points only
    moved = [any(p.grad is not None and (p.grad != 0).any() for p in n.parameters()) for n in nets]
    assert moved == [False, False, True]
    tables = [t.grad is not None and bool((t.grad != 0).any()) for t in f.tables()]
    assert tables == [False, False, True]
    again = build_field(f.to_dict())
    again.load_state_dict(f.state_dict())
    assert torch.equal(again.density(x), f.density(x))
    blob = build_field({"field": "blob", "inner": cfg, "boxes": cfg["box_tables"], "empty_outside": True})
    with torch.no_grad():
        z, _ = blob._preactivation(x)
        inner_raw, _ = blob.inner.log_density_head(blob.encode(x))
    assert torch.allclose(z, inner_raw + blob.bias(x))
    shared = build_field({**cfg, "box_density_heads": False})  # off: one MLP over features + one-hot
    assert len(shared.box_density_nets) == 0 and shared.density_net[0].in_features == 8 + 3


def test_a_box_table_can_be_coarser_than_the_main_table():
    """box_resolution_scale [k]: box table k looks its features up at the main base/max resolutions × that
    factor (the kernel's own answer with those levels), mixed batches too, and reloads; bad factors → ConfigError;
    generate.box_own_scale gives each object the ratio of its own scale (its table as fine as a lone
    object's), where the default gives every table the smallest object's."""
    from vision3d_kd.data.layout import Layout, LayoutObject
    from vision3d_kd.errors import ConfigError
    from vision3d_kd.fields.hashgrid import level_resolutions
    from vision3d_kd.generation.config import load_generate_config
    from vision3d_kd.generation.lucid import layout_setup, scene_ratio
    from vision3d_kd.kernels import hash_encode

    cfg = {"field": "hashgrid", "aabb": [[-2.0] * 3, [2.0] * 3], "n_levels": 4, "log2_table_size": 10,
           "base_resolution": 8, "max_resolution": 64, "init_scale": 0.5,
           "box_tables": [list(o.box) for o in TWO.objects], "box_resolution_scale": [1.0, 0.5]}
    f = build_field(cfg)
    assert f.table_resolutions[2].tolist() == level_resolutions(4, 4, 32).tolist() != f.resolutions.tolist()
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(2)) * 4 - 2
    idx = f.table_index(x)
    feat = f.encode(x)[:, :8]
    for k in range(3):
        m = idx == k
        assert m.sum() > 50
        want = hash_encode(f.normalize(x[m]), f.tables()[k], f.table_resolutions[k])
        assert torch.allclose(feat[m], want, atol=1e-6)
    coarse = hash_encode(f.normalize(x[idx == 2]), f.tables()[2], f.resolutions)
    assert not torch.allclose(feat[idx == 2], coarse, atol=1e-3)
    alone = f.encode(x[idx == 2])[:, :8]  # clipped rays: the one-table path
    assert torch.allclose(alone, feat[idx == 2], atol=1e-6)
    again = build_field(f.to_dict())
    again.load_state_dict(f.state_dict())
    assert torch.equal(again.encode(x), f.encode(x))
    for bad in ([0.5], [1.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ConfigError, match="box_resolution_scale"):
            build_field({**cfg, "box_resolution_scale": bad})
    layout = Layout((TWO.objects[0], LayoutObject("a blue cube", (-1.5, 0.0, -1.5, 1.5, 3.0, 1.5))))  # scale 1.5
    plain = load_generate_config("sds", None, [])
    own = load_generate_config("sds", None, ["generate.box_own_scale=true"])
    assert "box_resolution_scale" not in layout_setup(plain, layout).field
    ratio = scene_ratio(own, layout)
    got = layout_setup(own, layout).field["box_resolution_scale"]
    assert ratio > 1 and got == pytest.approx([1.0, scene_ratio(own, layout, 1.5) / ratio]) and got[1] < 1


def test_box_blob_ratio_sizes_every_students_box_blobs():
    """generate.box_blob_ratio r: a field student's box blobs have axes r × the box's sides (× blob_radius at
    b = 0) and a splat student's Gaussians start inside ellipsoids of the same axes; r ≤ 0 is refused."""
    from vision3d_kd.errors import ConfigError
    from vision3d_kd.generation import students
    from vision3d_kd.generation.config import load_generate_config

    small = [f"field.{k}={v}" for k, v in INNER.items() if k not in ("field", "aabb")]
    sides = torch.tensor(BOXES)[:, 3:] - torch.tensor(BOXES)[:, :3]
    for r in (0.625, 0.4):
        setup = load_generate_config("sds", None, ["generate.aabb=2", f"generate.box_blob_ratio={r}", *small])
        blob = students.FieldStudent(setup, torch.device("cpu"), BOXES).model
        assert torch.allclose(blob.box_spread, r * sides)
        splats = students.SplatStudent(setup, torch.device("cpu"), torch.Generator().manual_seed(0), BOXES).model
        centres = 0.5 * (torch.tensor(BOXES)[:, :3] + torch.tensor(BOXES)[:, 3:])
        which = torch.arange(len(splats.means)) % len(BOXES)
        u = (splats.means.detach() - centres[which]) / (r * sides[which] * setup.generate.blob_radius)
        assert float(u.norm(dim=1).max()) <= 1.0 + 1e-5
        assert float(u.norm(dim=1).max()) > 0.9  # they fill it, not a smaller ball
    with pytest.raises(ConfigError, match="box_blob_ratio"):
        load_generate_config("sds", None, ["generate.box_blob_ratio=0"]).validate()
