"""The procedural object world of the bundled prior: every family builds and renders, captions and view
suffixes, held-out pairs, which side the asymmetric parts appear on, and the shard writer/reader."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vision3d_kd.data.object_views import (
    add_part_masks,
    load_part_masks,
    load_prior_shards,
    random_spec,
    render_object,
    write_prior_dataset,
)
from vision3d_kd.data.objects import ASYMMETRIC, FAMILIES, HELD_OUT, ObjectSpec, build_object, caption, view_suffix
from vision3d_kd.errors import ConfigError, DataError


def _spec(family: str) -> ObjectSpec:
    return ObjectSpec(family, "red", "blue" if family == "house" else None)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_inside_the_unit_box_and_renders(family):
    spec = _spec(family)
    scene = build_object(spec)
    assert len(spec.parts) == len(scene.primitives)
    pts = scene.surface_points(2000, torch.Generator().manual_seed(0))
    assert len(pts) > 500 and pts.abs().max() < 1.0
    out = render_object(spec, torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([3.5]), size=32)
    assert out["rgb"].shape == (1, 32, 32, 3) and 0.05 < out["alpha"].mean() < 0.8
    assert (out["part"] >= 0).sum() > 0 and (out["rgb"][0][out["alpha"][0] == 0] == 1).all()  # white background


@pytest.mark.parametrize("family, side", [("mug", "right"), ("arrow", "right")])
def test_asymmetric_parts_switch_sides_between_front_and_back(family, side):
    spec = _spec(family)
    out = render_object(spec, torch.tensor([10.0, 10.0]), torch.tensor([0.0, 180.0]), torch.tensor([3.5, 3.5]),
                        size=48)
    part = spec.parts.index(ASYMMETRIC[family])
    xs = torch.arange(48).float()
    for view, want in ((0, side), (1, "left" if side == "right" else "right")):
        mask = out["part"][view] == part
        obj = out["part"][view] >= 0
        cx_part = (mask.float() * xs).sum() / mask.sum()
        cx_obj = (obj.float() * xs).sum() / obj.sum()
        assert (cx_part > cx_obj) == (want == "right"), (family, view)


def test_front_facing_parts_are_seen_from_the_front_only():
    for family in ("house", "snowman"):
        spec = _spec(family)
        out = render_object(spec, torch.tensor([10.0, 10.0]), torch.tensor([0.0, 180.0]), torch.tensor([3.5, 3.5]),
                            size=64)
        part = spec.parts.index(ASYMMETRIC[family])
        assert (out["part"][0] == part).sum() >= 8 and (out["part"][1] == part).sum() == 0, family


def test_captions_view_suffixes_and_held_out_pairs():
    assert caption(ObjectSpec("house", "red", "blue")) == "a red house with a blue roof"
    assert caption(ObjectSpec("sphere", "orange")) == "an orange ball"
    assert caption(ObjectSpec("mushroom", "purple")) == "a mushroom with a purple cap"
    assert view_suffix(10, 30) == ", front view" and view_suffix(10, 330) == ", front view"
    assert view_suffix(10, 180) == ", back view" and view_suffix(10, 90) == ", side view"
    assert view_suffix(70, 0) == ", overhead view"
    rng = random.Random(0)
    train = {(s.family, s.colour) for s in (random_spec(rng) for _ in range(500))}
    assert not train & HELD_OUT and len({f for f, _ in train}) == len(FAMILIES)
    assert all((s.family, s.colour) in HELD_OUT for s in (random_spec(rng, held_out=True) for _ in range(20)))
    with pytest.raises(ConfigError, match="second colour"):
        ObjectSpec("house", "red")
    with pytest.raises(ConfigError, match="unknown colour"):
        ObjectSpec("mug", "teal")


def test_prior_dataset_shards_resume_and_read_back(tmp_path):
    out = tmp_path / "data"
    write_prior_dataset(out, 5, views_per_object=2, size=16, seed=3, shard_size=3)
    images, meta = load_prior_shards(out)
    assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8 and len(meta) == 5
    assert meta[0]["object"] == meta[1]["object"] and meta[0]["caption"].endswith(" view")
    assert -10 <= meta[0]["elevation_deg"] <= 60 and 3.2 <= meta[0]["radius"] <= 3.8
    (out / "images_0001.npy").unlink()  # an interrupted run: the second shard is redone identically
    write_prior_dataset(out, 5, views_per_object=2, size=16, seed=3, shard_size=3)
    again, meta2 = load_prior_shards(out)
    assert np.array_equal(images, again) and meta == meta2
    masks = load_part_masks(out)
    assert masks.shape == (5, 16, 16) and masks.dtype == np.uint8
    for i, m in enumerate(meta):  # only the asymmetric part is marked
        assert m["family"] in ASYMMETRIC or masks[i].sum() == 0
    (out / "parts_0000.npy").unlink()  # a data set made before part masks: they are added from the metadata
    with pytest.raises(DataError, match="--part-masks"):
        load_part_masks(out)
    add_part_masks(out)
    assert np.array_equal(load_part_masks(out), masks)
    with pytest.raises(DataError, match="other settings"):
        write_prior_dataset(out, 6, views_per_object=2, size=16, seed=3, shard_size=3)
    with pytest.raises(DataError, match="no images"):
        load_prior_shards(tmp_path)


def test_part_mask_marks_the_mug_handle_on_the_right_of_a_front_view():
    from vision3d_kd.data.object_views import _part_mask

    elev, azim, rad = torch.tensor([10.0, 10.0]), torch.tensor([0.0, 180.0]), torch.tensor([3.5, 3.5])
    mug, ball = _spec("mug"), _spec("sphere")
    mask = _part_mask(mug, render_object(mug, elev, azim, rad, 32)["part"])
    xs = np.nonzero(mask[0])[1]
    assert len(xs) > 10 and xs.min() > 16  # the handle (+y) is right of the front view
    assert np.nonzero(mask[1])[1].max() < 16  # and left of the back view
    assert _part_mask(ball, render_object(ball, elev, azim, rad, 32)["part"]).sum() == 0
