"""GSV3D parts on tiny models: orbit data, the multi-view attention and generator, the Gaussian decoder, the
consistency and Chamfer scores, the image reader over bad pictures, training resume, LoRA round trip and the
`image-to-3d` command end to end (the bundled models' quality is `v3kd bench gsv3d`'s)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision3d_kd.data.object_image import load_object_image
from vision3d_kd.data.object_orbits import (
    load_orbit_dataset,
    orbit_cameras,
    render_views,
    ring_azimuths,
    split_objects,
    write_orbit_dataset,
)
from vision3d_kd.data.objects import HELD_OUT
from vision3d_kd.distill.gsv3d.decoder import GaussianDecoder, load_decoder
from vision3d_kd.distill.gsv3d.generator import generator_from_prior, load_generator
from vision3d_kd.distill.gsv3d.scores import chamfer, reprojection_error, surface_points
from vision3d_kd.errors import DataError

from .conftest import BAD_INPUTS, need_shared, one_line_error, run_cli
from .gsv3d_tiny import TINY_DECODER

LOCAL_BAD = Path(__file__).parent / "bad_inputs"
def test_orbit_views_and_splits():
    obj = split_objects("validation", 4)[0]
    r = render_views(obj, torch.full((3,), 20.0), torch.tensor([0.0, 90.0, 180.0]), 24)
    assert r["rgb"].shape == (3, 24, 24, 3) and r["opacity"].shape == (3, 24, 24)
    assert (r["depth"][r["opacity"] == 0] == 0).all() and r["depth"].max() < 3.5 + 1.5
    val, test = split_objects("validation", 10), split_objects("test", 10)
    assert [o.record() for o in val] == [o.record() for o in split_objects("validation", 10)]  # reproducible
    unseen = {(o.spec.family, o.spec.colour) for o in val[:5]}
    assert unseen <= HELD_OUT and not unseen & {(o.spec.family, o.spec.colour) for o in test[:5]}
    assert not any((o.spec.family, o.spec.colour) in HELD_OUT for o in val[5:])


def test_orbit_dataset_resumes_and_refuses_other_settings(tiny):
    d = load_orbit_dataset(tiny["data"])
    assert d["rgb"].shape == (4, 6, 32, 32, 3) and d["ring"] == 4 and len(d["meta"]) == 4
    assert all(m["azimuth_deg"][0] == 0.0 and len(set(m["elevation_deg"][:4])) == 1 for m in d["meta"])
    assert not any((m["family"], m["colour"]) in HELD_OUT for m in d["meta"])
    before = (tiny["data"] / "rgb_0000.npy").stat().st_mtime_ns
    write_orbit_dataset(tiny["data"], 4, ring=4, novel=2, size=32, shard_size=3)  # complete shards are kept
    assert (tiny["data"] / "rgb_0000.npy").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="other settings"):
        write_orbit_dataset(tiny["data"], 5, ring=4, novel=2, size=32, shard_size=3)


def test_multiview_attention_couples_frames_and_nothing_else(tiny):
    torch.manual_seed(0)
    g = generator_from_prior(tiny["prior"], 3.5, 32)
    x, t = torch.randn(2, 4, 4, 16, 16), torch.tensor([500, 30])  # the tiny VAE halves 32 px
    cond, tokens = g.condition(torch.rand(2, 3, 32, 32))
    cams = g.cameras(torch.tensor([10.0, 25.0]), torch.tensor([[0.0, 90, 180, 270]] * 2))
    with torch.no_grad():
        eps = g.predict_noise(x, t, cond, tokens, cams)
        perm = torch.tensor([2, 0, 3, 1])
        assert torch.allclose(g.predict_noise(x[:, perm], t, cond, tokens, cams[:, perm]), eps[:, perm], atol=1e-5)
        assert torch.allclose(g.predict_noise(x[1:], t[1:], cond[1:], tokens[1:], cams[1:]), eps[1:], atol=1e-5)
        changed = x.clone()
        changed[0, 3] += 1.0  # another frame of the same object changes this frame's prediction
        assert (g.predict_noise(changed, t, cond, tokens, cams)[0, 0] - eps[0, 0]).abs().max() > 1e-4
        # one frame: exactly the prior's UNet with the input channels zero-extended
        one = g.predict_noise(x[:, :1], t, torch.zeros_like(cond), tokens, cams[:, :1])
        from diffusers import UNet2DConditionModel

        prior = UNet2DConditionModel.from_pretrained(tiny["prior"] / "unet")
        ref = prior(x[:, 0], t, encoder_hidden_states=tokens, class_labels=cams[:, 0]).sample
        assert torch.allclose(one[:, 0], ref, atol=1e-5)


def test_decoder_puts_one_gaussian_on_every_latent_pixel_ray_and_trains_through_the_rasterizer():
    from vision3d_kd.distill.gsv3d.orbit_set import render_loss

    torch.manual_seed(0)
    dec = GaussianDecoder(TINY_DECODER)
    v = 4
    cams = orbit_cameras(torch.full((v,), 20.0), ring_azimuths(v), 32)
    lat = torch.randn(1, v, 4, 8, 8, requires_grad=True)
    (s,) = dec(lat, cams, torch.rand(1, 3, 32, 32))
    assert s.means.shape == (v * 64, 3) and s.sh.shape == (v * 64, 1, 3)
    # every Gaussian sits on its pixel's ray: its offset from the camera centre is parallel to the ray
    centre = cams.c2w[0, :3, 3]
    off = s.means[:64] - centre
    dist = off.norm(dim=-1)
    assert ((dist > 3.5 - 1.8 - 1e-4) & (dist < 3.5 + 1.8 + 1e-4)).all()
    obj = split_objects("validation", 1)[0]
    gt = render_views(obj, torch.full((v,), 20.0), ring_azimuths(v), 32)
    loss, terms = render_loss(s, cams, gt["rgb"], gt["opacity"], gt["depth"])
    loss.backward()
    assert lat.grad is not None and lat.grad.abs().sum() > 0 and all(np.isfinite(list(terms.values())))
    splats = s.to_splats()
    assert splats.n <= v * 64 and splats.sh_degree == 0


def test_consistency_and_chamfer_scores():
    obj = split_objects("test", 1)[0]
    v = 8
    el, az = torch.full((v,), obj.elevation), ring_azimuths(v)
    cams = orbit_cameras(el, az, 48)
    gt = render_views(obj, el, az, 48)
    floor = reprojection_error(gt["rgb"], cams, gt["opacity"], gt["depth"])
    shuffled = reprojection_error(gt["rgb"].roll(1, 0), cams, gt["opacity"], gt["depth"])
    assert floor < 0.04 and shuffled > 3 * floor
    p = surface_points(cams, gt["opacity"], ray_depth=gt["depth"])
    assert p.norm(dim=-1).max() < 1.8  # on the object, not at the cameras
    far = surface_points(cams, gt["opacity"], ray_depth=gt["depth"] * 1.05)
    assert chamfer(p, p) < 1e-6 and 0.02 < chamfer(p, far) < 0.3
    assert chamfer(p, p[:0]) == float("inf")


IMAGE_BAD = sorted(p.name for p in LOCAL_BAD.iterdir() if p.name.startswith("image_"))


@pytest.mark.parametrize("entry", IMAGE_BAD)
def test_image_to_3d_rejects_bad_pictures_with_one_line(entry, tmp_path, capsys):
    assert run_cli(["image-to-3d", str(LOCAL_BAD / entry), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    one_line_error(capsys, entry)
    assert not (tmp_path / "run").exists() and not list(tmp_path.iterdir())


def test_image_to_3d_rejects_the_shared_truncated_png(tmp_path, capsys):
    png = need_shared(BAD_INPUTS / "blender_truncated_png" / "train" / "r_1.png")
    assert run_cli(["image-to-3d", str(png), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    one_line_error(capsys, "r_1.png")
    assert not (tmp_path / "run").exists()


def test_image_reader_composites_alpha_pads_and_applies_exif(tmp_path):
    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[5:15, 10:20] = [255, 0, 0, 255]  # a red square on a transparent (black) background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = load_object_image(tmp_path / "a.png", 40)
    assert x.shape == (3, 40, 40) and torch.allclose(x[:, 0, 0], torch.ones(3))  # background white, padded white
    assert torch.allclose(x[:, 20, 15], torch.tensor([1.0, 0.0, 0.0]))  # square kept, shifted down by the padding
    im = Image.fromarray(rgba[..., :3])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° on capture: shown upright after transposing
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert load_object_image(tmp_path / "r.jpg", 40).shape == (3, 40, 40)
    grey16 = (np.full((8, 8), 30000)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g.png")
    assert abs(float(load_object_image(tmp_path / "g.png", 8).mean()) - 30000 / 65535) < 0.01
    centred = load_object_image(tmp_path / "a.png", 40, recentre=0.5)
    red = (centred[1] < 0.5).nonzero()
    assert red[:, 0].min() >= 9 and red[:, 0].max() <= 30 and red[:, 1].max() - red[:, 1].min() >= 18


def test_training_resumes_and_lora_round_trips(tiny):
    from vision3d_kd.distill.gsv3d import train as tr
    from vision3d_kd.distill.gsv3d.geometric import load_lora

    cfg = tr.DecoderTrainConfig(steps=2, batch=2, ring_views=1, novel_views=1, decoder=TINY_DECODER)
    gen = load_generator(tiny["gen"])
    m = tr.train_decoder(tiny["data"], tiny["root"] / "dec_run", tr.DecoderTrainConfig(
        **{**cfg.__dict__, "steps": 3}), gen, "gen", resume=True, show_progress=False)
    assert m["steps"] == 3
    with pytest.raises(Exception, match="other settings"):
        tr.train_decoder(tiny["data"], tiny["root"] / "dec_run", tr.DecoderTrainConfig(
            **{**cfg.__dict__, "steps": 4, "lr": 1e-3}), gen, "gen", resume=True, show_progress=False)
    a, b = load_lora(load_generator(tiny["gen"]), tiny["lora"]), load_lora(load_generator(tiny["gen"]), tiny["lora"])
    img = torch.rand(1, 3, 32, 32)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    lat_a = a.sample(img, torch.tensor([20.0]), ring_azimuths(4), 2, 2.0, g1)
    assert torch.equal(lat_a, b.sample(img, torch.tensor([20.0]), ring_azimuths(4), 2, 2.0, g2))
    assert json.loads((tiny["lora"] / "lora.json").read_text())["rank"] == 2


def test_a_decoder_deepened_computes_the_same_and_trains_on_from_init(tiny):
    """`deepened(d)`: the added blocks start as identities (the same Gaussians up to float rounding);
    `train_decoder --init` with more blocks trains on from the deepened decoder; fewer blocks is refused."""
    import dataclasses

    from vision3d_kd.distill.gsv3d import train as tr
    from vision3d_kd.errors import ConfigError

    base = load_decoder(tiny["dec"])
    deep = base.deepened(base.config.depth + 2)
    torch.manual_seed(0)
    lat, img = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 3, 32, 32)
    cams = orbit_cameras(torch.full((4,), 20.0), ring_azimuths(4), 32)
    a, b = base(lat, cams, img)[0], deep(lat, cams, img)[0]
    for key in ("means", "log_scales", "quats", "opacity_logits", "rgb"):
        assert torch.allclose(getattr(a, key), getattr(b, key), atol=1e-6)
    assert len(deep.blocks) == base.config.depth + 2 and not torch.equal(a.rgb, torch.zeros_like(a.rgb))
    with pytest.raises(ValueError, match="only be deepened"):
        base.deepened(0)

    def train(depth: int) -> Path:
        cfg = tr.DecoderTrainConfig(steps=1, batch=1, ring_views=1, novel_views=1,
                                    decoder=dataclasses.replace(TINY_DECODER, depth=depth))
        run = tiny["root"] / f"deep_{depth}"
        tr.train_decoder(tiny["data"], run, cfg, load_generator(tiny["gen"]), "gen", init=tiny["dec"],
                         show_progress=False)
        return tr.export_decoder(run, tiny["root"] / f"deep_{depth}_out")

    assert load_decoder(train(base.config.depth + 1)).config.depth == base.config.depth + 1
    with pytest.raises(ConfigError, match="only more blocks"):
        train(base.config.depth - 1)


def test_sample_rings_averages_rings_drawn_in_turn_and_keeps_the_input_view(tiny, tmp_path, capsys):
    """One ring is `sample`'s; K rings are the mean of K samples drawn one after another from the same random
    stream; keep_input puts the input's own latent at azimuth 0 only; a bad --average is one line, exit 2."""
    gen = load_generator(tiny["gen"])
    img, el, az = torch.rand(1, 3, 32, 32), torch.tensor([20.0]), ring_azimuths(4)
    one = gen.sample(img, el, az, 2, 2.0, torch.Generator().manual_seed(5))
    first, same = gen.sample_rings(img, el, az, 2, 2.0, torch.Generator().manual_seed(5))
    assert torch.equal(first, one) and torch.equal(same, one)
    g = torch.Generator().manual_seed(5)
    a, b = gen.sample(img, el, az, 2, 2.0, g), gen.sample(img, el, az, 2, 2.0, g)
    assert not torch.allclose(a, b)
    first, mean = gen.sample_rings(img, el, az, 2, 2.0, torch.Generator().manual_seed(5), rings=2, keep_input=True)
    assert torch.equal(first, a)
    assert torch.allclose(mean[:, 1:], (a + b)[:, 1:] / 2, atol=1e-6)
    assert torch.allclose(mean[:, 0], gen.encode(img), atol=1e-6) and not torch.allclose(mean[:, 0], a[:, 0])
    bad = ["image-to-3d", str(LOCAL_BAD / IMAGE_BAD[0]), "--out", str(tmp_path / "run"), "--average", "0"]
    assert run_cli(bad) == 2
    one_line_error(capsys, "--average")
    assert not (tmp_path / "run").exists()


def test_image_to_3d_writes_a_splats_run_that_exports(tiny, tmp_path, capsys):
    obj = split_objects("validation", 1)[0]
    gt = render_views(obj, torch.tensor([obj.elevation]), torch.zeros(1), 48)
    Image.fromarray((gt["rgb"][0].numpy() * 255).astype(np.uint8)).save(tmp_path / "in.png")
    args = ["image-to-3d", str(tmp_path / "in.png"), "--out", str(tmp_path / "run"), "--views", "4", "--steps", "2",
            "--average", "2", "--keep-input",
            "--generator", str(tiny["gen"]), "--decoder", str(tiny["dec"]), "--lora-path", str(tiny["lora"]),
            "--no-video", "--no-progress", "--elevation", f"{obj.elevation:.1f}"]
    assert run_cli(args) == 0
    run = tmp_path / "run"
    assert {"config.json", "weights.safetensors", "splats.ply", "views.png", "metrics.json"} <= {
        p.name for p in run.iterdir()}
    assert json.loads((run / "metrics.json").read_text())["gaussians"] > 0
    assert run_cli(["export", str(run), "--format", "splat", "--out", str(tmp_path / "x.splat")]) == 0
    assert run_cli(["render", str(run), "--orbit", "3", "--size", "32", "--out", str(tmp_path / "o.gif")]) == 0
    assert (tmp_path / "o.gif").stat().st_size > 0
    capsys.readouterr()
    assert run_cli(args) == 2  # the run exists: refused, untouched
    one_line_error(capsys, "already exists")


def test_generator_training_can_continue_from_a_saved_generator(tiny):
    """--init: the run starts from the saved generator's weights (at lr 0 its export is that generator, here
    one whose conv_in and image encoder were moved away from what the prior would give), and a wrong image
    size is refused."""
    from vision3d_kd.distill.gsv3d import train as tr

    root = tiny["root"]
    old = load_generator(tiny["gen"])
    with torch.no_grad():
        old.unet.conv_in.weight.add_(0.5)
        old.encoder.pos.fill_(1.0)
    old.save(root / "gen_moved")
    cfg = tr.GeneratorTrainConfig(steps=1, batch=1, lr=0.0)
    tr.train_generator(tiny["data"], root / "gen_cont", cfg, tiny["prior"], show_progress=False,
                       init=root / "gen_moved")
    tr.export_generator(root / "gen_cont", tiny["prior"], root / "gen_cont_out")
    old, new = load_generator(root / "gen_moved"), load_generator(root / "gen_cont_out")
    for a, b in ((old.unet, new.unet), (old.encoder, new.encoder)):
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.allclose(x, y, atol=1e-3), k
    assert json.loads((root / "gen_cont" / "config.json").read_text())["init"] == str(root / "gen_moved")
    other = write_orbit_dataset(root / "data16", 1, ring=2, novel=1, size=16)
    with pytest.raises(Exception, match="32-px views"):
        tr.train_generator(other, root / "gen_bad", cfg, tiny["prior"], show_progress=False, init=tiny["gen"])


def test_bench_gsv3d_quick_reports_every_figure_with_the_bundled_models(tmp_path):
    """`v3kd bench gsv3d --quick` (2 validation objects, 8 views, 5 steps): every summary figure, finite; the
    true views are more consistent than the generator's, and the decoder does better on the true latents."""
    assert run_cli(["bench", "gsv3d", "--quick", "--first-seed", "1", "--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gsv3d-validation-quick.json").read_text())
    s = report["summary"]
    assert s["first_seed"] == 1 and {r["seed"] for r in report["rows"] if "seed" in r} == {1}
    for key in ("consistency_raw", "consistency_decoder", "consistency_lora", "chamfer_decoder", "chamfer_lora",
                "psnr_novel", "seconds_per_image", "psnr_novel_true_latents"):
        assert math.isfinite(s[key]), key
    assert s["consistency_gt"] < s["consistency_raw"]
    assert s["psnr_novel_true_latents"] > s["psnr_novel_decoder"]


def test_sample_set_holds_the_generators_rings_and_the_decoder_trains_on_them(tiny, monkeypatch):
    """`write_sample_set` in two workers stores each object's ring as `sample` gives it (seed + object index;
    with `average` 2, the mean of two rings as `sample_rings` gives it), refuses other settings, an unfinished
    set (unless only its finished first objects are asked for) and another generator; `train_decoder --init
    --samples` starts from the saved decoder and, at rate 1,
    decodes only the set's rings."""
    from vision3d_kd.distill.gsv3d import train as tr
    from vision3d_kd.distill.gsv3d.orbit_set import OrbitSet
    from vision3d_kd.distill.gsv3d.sample_set import load_sample_set, write_sample_set
    from vision3d_kd.errors import ConfigError, DataError

    root, g = tiny["root"], load_generator(tiny["gen"])
    out = root / "samples"

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # worker 0 stopped after its first object (saved), owing object 2
        write_sample_set(tiny["data"], g, "gen", out, 3, steps=4, seed=5, worker=(0, 2), save_every=1,
                         progress=interrupt)
    first = load_sample_set(out, g, upto=1)[0]  # object 0 is done, and worker 1 (no part yet) owes none of these
    with pytest.raises(DataError, match="worker 1/2 has sampled 0 of the 1 objects"):
        load_sample_set(out, g, upto=2)
    write_sample_set(tiny["data"], g, "gen", out, 3, steps=4, seed=5, worker=(1, 2), save_every=1)
    with pytest.raises(DataError, match="worker 0/2 has sampled 1 of the 2"):
        load_sample_set(out, g)
    first_two = load_sample_set(out, g, upto=2)[0]  # objects 0 and 1 are done: usable while the set grows
    assert torch.equal(first, first_two[:1])
    with pytest.raises(ConfigError, match="first 4 asked for"):
        load_sample_set(out, g, upto=4)
    write_sample_set(tiny["data"], g, "gen", out, 3, steps=4, seed=5, worker=(0, 2), save_every=1)  # resumes
    lat, info = load_sample_set(out, g)
    assert torch.equal(first_two, lat[:2])
    orbits = OrbitSet(tiny["data"], g)
    states: dict[int, torch.Tensor] = {}
    want = g.sample(orbits.inputs([2]), orbits.elevation[2, :1], orbits.azimuth[2, :4], 4, info["guidance"],
                    torch.Generator().manual_seed(7), trace=lambda t, x: states.__setitem__(t, x[0]))
    assert info["state_t"] == [666, 333, 0]  # 1/4, 1/2, 3/4 down [999, 666, 333, 0]
    assert lat.shape == (3, 4, 4, *orbits.latents.shape[2:])
    for got, true in zip(lat[2], [want[0]] + [states[t] for t in info["state_t"]], strict=True):
        assert torch.allclose(got, true, rtol=2e-3, atol=1e-2)  # stored as float16
    assert not torch.allclose(lat[1, 0], lat[2, 0], rtol=0.05, atol=0.1)
    with pytest.raises(ConfigError, match="other settings"):
        write_sample_set(tiny["data"], g, "gen", out, 3, steps=3, seed=5, worker=(0, 2))
    with pytest.raises(ConfigError, match="only --objects may grow"):
        write_sample_set(tiny["data"], g, "gen", out, 2, steps=4, seed=5, worker=(0, 2))
    write_sample_set(tiny["data"], g, "gen", out, 4, steps=4, seed=5, worker=(1, 2))  # adds object 3
    grown, _ = load_sample_set(out, g)  # worker 0's objects 0 and 2 were all it has to do
    assert len(grown) == 4 and torch.equal(grown[:3], lat)
    two, _ = load_sample_set(write_sample_set(tiny["data"], g, "gen", root / "two", 1, steps=4, average=2), g)
    first2, mean2 = g.sample_rings(orbits.inputs([0]), orbits.elevation[0, :1], orbits.azimuth[0, :4], 4,
                                   info["guidance"], torch.Generator().manual_seed(0), 2)
    assert torch.allclose(two[0, 0], mean2[0], rtol=2e-3, atol=1e-2)
    assert not torch.allclose(two[0, 0], first2[0], rtol=0.05, atol=0.1)  # not one ring
    moved = load_generator(tiny["gen"])
    with torch.no_grad():
        moved.unet.conv_in.weight.add_(0.1)
    with pytest.raises(ConfigError, match="another generator"):
        load_sample_set(out, moved)

    cfg = tr.DecoderTrainConfig(steps=1, batch=2, ring_views=1, novel_views=1, decoder=TINY_DECODER, lr=0.0,
                                generated=1.0)
    with pytest.raises(ConfigError, match="go together"):
        tr.train_decoder(tiny["data"], root / "dec_x", cfg, g, "gen", show_progress=False, init=tiny["dec"])
    tr.train_decoder(tiny["data"], root / "dec_own", cfg, g, "gen", show_progress=False, init=tiny["dec"],
                     samples=out)
    tr.export_decoder(root / "dec_own", root / "dec_own_out")
    for (k, x), y in zip(load_decoder(tiny["dec"]).state_dict().items(),
                         load_decoder(root / "dec_own_out").state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), k
    seen: list[torch.Tensor] = []
    forward = GaussianDecoder.forward
    monkeypatch.setattr(GaussianDecoder, "forward", lambda self, lat, *a: seen.append(lat.detach()) or
                        forward(self, lat, *a))
    for k in (0, 1):
        part = out / f"part_{k}_of_2.npy"
        np.save(part, np.full_like(np.load(part), 7.0))
    tr.train_decoder(tiny["data"], root / "dec_seven", cfg, g, "gen", show_progress=False, init=tiny["dec"],
                     samples=out)
    assert seen and all(bool((lat == 7.0).all()) for lat in seen)  # at rate 1 every ring is the set's
    seen.clear()
    keep = tr.DecoderTrainConfig(**{**cfg.__dict__, "keep_input": True})
    tr.train_decoder(tiny["data"], root / "dec_keep", keep, g, "gen", show_progress=False, init=tiny["dec"],
                     samples=out)
    true_inputs = orbits.latents[:, 0]  # --keep-input: frame 0 is the true input latent, the rest the set's
    assert seen and all(bool((lat[:, 1:] == 7.0).all()) and any(torch.equal(f, t) for t in true_inputs)
                        for lat in seen for f in lat[:, 0])
