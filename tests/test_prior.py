"""Diffusion priors: DiffusersPrior over tiny SD-style (latent) and IF-style (pixel) pipelines built and
saved in the test, CFG arithmetic, v-prediction conversion, determinism, missing components, DDIM
sampling, and the bundled-prior training tool on a few rendered objects (tiny sizes: seconds)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.conftest import one_line_error, run_cli
from tests.tiny_pipelines import save_tiny_if, save_tiny_sd
from vision3d_kd.errors import ConfigError, DataError
from vision3d_kd.guidance.diffusers_prior import DiffusersPrior
from vision3d_kd.guidance.prior import CameraCondition, camera_features, v_to_epsilon
from vision3d_kd.guidance.sampling import ddim_sample


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    """A tiny Stable-Diffusion-style pipeline saved by diffusers itself."""
    return save_tiny_sd(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def if_dir(tmp_path_factory):
    """A tiny DeepFloyd-IF-style pixel pipeline: no VAE, T5 text, the UNet also predicts a variance (6 channels)."""
    return save_tiny_if(tmp_path_factory.mktemp("if"))


def test_sd_style_pipeline_shapes_cfg_and_determinism(sd_dir):
    prior = DiffusersPrior(sd_dir)
    assert (prior.channels, prior.sample_size, prior.image_size) == (4, 16, 32)
    assert not prior.camera_conditioned and prior.num_train_timesteps == 1000
    emb = prior.text_embeddings(["a red mug", "a blue ball, back view"], negative="")
    assert emb.cond.shape == (2, 12, 32) and emb.uncond.shape == (2, 12, 32)
    images = torch.rand(2, 3, 32, 32)
    z = prior.encode(images)
    assert z.shape == (2, 4, 16, 16)
    assert prior.decode(z).shape == (2, 3, 32, 32)
    t = torch.tensor([10, 900])
    noisy = prior.add_noise(z, torch.randn_like(z), t)
    eps_u, eps_c = prior.predict_noise_pair(noisy, t, emb)
    direct_u = prior.model_output(noisy, t, emb.uncond, None)
    direct_c = prior.model_output(noisy, t, emb.cond, None)
    assert torch.allclose(eps_u, direct_u, atol=1e-5) and torch.allclose(eps_c, direct_c, atol=1e-5)
    guided = prior.predict_noise(noisy, t, emb, guidance_scale=7.5)
    assert torch.allclose(guided, direct_u + 7.5 * (direct_c - direct_u), atol=1e-4)
    assert torch.equal(guided, prior.predict_noise(noisy, t, emb, guidance_scale=7.5))  # deterministic
    assert not torch.allclose(eps_u, eps_c)  # the text reaches the UNet


def test_v_prediction_is_converted_to_epsilon(sd_dir, tmp_path):
    v_dir = tmp_path / "v"
    shutil.copytree(sd_dir, v_dir)
    cfg_path = v_dir / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "prediction_type": "v_prediction"}))
    prior = DiffusersPrior(v_dir)
    emb = prior.text_embeddings(["a red mug"])
    x_t, t = torch.randn(1, 4, 16, 16), torch.tensor([500])
    raw = prior.model_output(x_t, t, emb.cond, None)
    _, eps_c = prior.predict_noise_pair(x_t, t, emb)
    assert torch.allclose(eps_c, v_to_epsilon(raw, x_t, prior.alphas_cumprod[t]), atol=1e-5)


def test_if_style_pixel_pipeline(if_dir):
    prior = DiffusersPrior(if_dir)
    assert prior.vae is None and (prior.channels, prior.image_size) == (3, 16)
    x = prior.encode(torch.rand(1, 3, 40, 40))  # resized to the UNet's size, mapped to [-1, 1]
    assert x.shape == (1, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    emb = prior.text_embeddings(["a red mug"])
    eps = prior.predict_noise(x, torch.tensor([3]), emb, guidance_scale=3.0)
    assert eps.shape == (1, 3, 16, 16)  # the variance channels are dropped
    img = ddim_sample(prior, ["a red mug"], steps=3, generator=torch.Generator().manual_seed(0))
    assert img.shape == (1, 3, 16, 16) and 0 <= img.min() and img.max() <= 1


@pytest.mark.parametrize("damage", ["no_index", "no_vae_folder", "no_unet_weights", "not_a_dir"])
def test_incomplete_pipeline_directories_name_the_missing_part(sd_dir, tmp_path, damage):
    broken = tmp_path / "broken"
    shutil.copytree(sd_dir, broken)
    expect = {"no_index": "model_index.json", "no_vae_folder": "'vae'", "no_unet_weights": "'unet'",
              "not_a_dir": "no such prior directory"}[damage]
    if damage == "no_index":
        (broken / "model_index.json").unlink()
    elif damage == "no_vae_folder":
        shutil.rmtree(broken / "vae")
    elif damage == "no_unet_weights":
        for f in (broken / "unet").glob("*.safetensors"):
            f.unlink()
    else:
        broken = tmp_path / "missing"
    with pytest.raises(DataError, match=expect) as err:
        DiffusersPrior(broken)
    assert "\n" not in str(err.value)


def test_camera_features_are_continuous_and_read_from_c2w():
    from vision3d_kd.cameras import cameras_from_spherical

    elev, azim, rad = torch.tensor([20.0, -5.0]), torch.tensor([359.0, 90.0]), torch.tensor([3.5, 3.2])
    cams = cameras_from_spherical(elev, azim, rad, torch.full((2,), 40.0), 8, 8)
    cam = CameraCondition.from_c2w(cams.c2w)
    assert torch.allclose(camera_features(cam), camera_features(CameraCondition(elev, azim, rad)), atol=1e-5)
    near = camera_features(CameraCondition(elev[:1], torch.tensor([1.0]), rad[:1]))
    assert (near - camera_features(CameraCondition(elev[:1], azim[:1], rad[:1]))).abs().max() < 0.05


def test_bundled_prior_trains_resumes_and_loads_like_any_pipeline(tmp_path):
    from diffusers import DiffusionPipeline

    from vision3d_kd.data.object_views import load_part_masks, load_prior_shards, write_prior_dataset
    from vision3d_kd.guidance.prior_training import PriorTrainConfig, train_prior

    data = write_prior_dataset(tmp_path / "data", 8, views_per_object=4, size=32, seed=0)
    images, meta = load_prior_shards(data)
    cfg = PriorTrainConfig(size="tiny", batch=4, vae_steps=3, unet_steps=2, checkpoint_every=2, log_every=1)
    logged = []
    out = train_prior(images, meta, tmp_path / "work", tmp_path / "prior", cfg,
                      lambda stage, step, rec: logged.append((stage, step)))
    assert ("vae", 3) in logged and ("unet", 2) in logged
    cfg.unet_steps, cfg.part_weight = 3, 5.0  # resume (only the missing step runs) with the part-weighted loss
    with pytest.raises(ConfigError, match="part mask"):
        train_prior(images, meta, tmp_path / "work", out, cfg)
    logged.clear()
    train_prior(images, meta, tmp_path / "work", out, cfg, lambda stage, step, rec: logged.append((stage, step)),
                load_part_masks(data))
    assert logged == [("unet", 3)]
    prior = DiffusersPrior(out)
    assert prior.camera_conditioned and (prior.channels, prior.sample_size, prior.image_size) == (4, 8, 32)
    cam = CameraCondition(torch.tensor([20.0]), torch.tensor([0.0]), torch.tensor([3.5]))
    img = ddim_sample(prior, ["a red mug, front view"], cam, steps=2, generator=torch.Generator().manual_seed(0))
    assert img.shape == (1, 3, 32, 32)
    ids = prior.tokenizer(["a red mug, front view"]).input_ids[0]
    assert prior.tokenizer.unk_token_id not in ids  # the word tokenizer knows the world's captions
    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.unet.config.class_embed_type == "projection"
    from vision3d_kd.guidance.prior_training import export_checkpoint

    again, step = export_checkpoint(tmp_path / "work", tmp_path / "exported")  # from the checkpoints alone
    assert step == 3
    emb = prior.text_embeddings(["a red mug"])
    x = torch.randn(1, 4, 8, 8)
    same = DiffusersPrior(again).model_output(x, torch.tensor([7]), emb.cond, cam)
    assert torch.allclose(same, prior.model_output(x, torch.tensor([7]), emb.cond, cam), atol=1e-6)


@pytest.fixture(scope="module")
def tiny_bundled(tmp_path_factory):
    """A tiny prior trained for a few steps by the bundled-prior trainer (a stand-in for vision3d_kd/assets/prior)."""
    from vision3d_kd.data.object_views import load_prior_shards, write_prior_dataset
    from vision3d_kd.guidance.prior_training import PriorTrainConfig, train_prior

    tmp = tmp_path_factory.mktemp("bundled")
    images, meta = load_prior_shards(write_prior_dataset(tmp / "data", 4, views_per_object=2, size=32, seed=1))
    cfg = PriorTrainConfig(size="tiny", batch=2, vae_steps=1, unet_steps=1)
    return train_prior(images, meta, tmp / "work", tmp / "prior", cfg)


def test_prior_sample_cli_writes_one_png_per_call(tiny_bundled, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "mug.png"
    assert run_cli(["prior", "sample", "a red mug", "--prior", str(tiny_bundled), "--out", str(out), "--n", "2",
                    "--steps", "2", "--azimuth", "180"]) == 0
    assert "a red mug, back view" in capsys.readouterr().out
    assert Image.open(out).size == (64, 32)
    assert run_cli(["prior", "sample", "a red mug", "--prior", str(tmp_path / "nope"), "--out", str(out)]) == 2
    one_line_error(capsys, "no such prior directory")
    jpg = tmp_path / "x.jpg"
    assert run_cli(["prior", "sample", "a red mug", "--prior", str(tiny_bundled), "--out", str(jpg)]) == 2
    one_line_error(capsys, ".png")


def test_write_samples_takes_a_prior_or_its_directory(tiny_bundled, tmp_path):
    """The library function behind `v3kd prior sample`: a loaded prior and its directory give the same
    seeded images; a prompt that already names a view keeps it; options are checked before loading."""
    from PIL import Image

    from vision3d_kd.guidance.diffusers_prior import load_prior
    from vision3d_kd.guidance.sampling import write_samples

    text, images = write_samples(load_prior(tiny_bundled), "a red mug", tmp_path / "a.png", azimuth_deg=180.0, n=2,
                                 steps=2, seed=3)
    assert text == "a red mug, back view" and images.shape[0] == 2
    same_text, same = write_samples(tiny_bundled, "a red mug", tmp_path / "b.png", azimuth_deg=180.0, n=2, steps=2,
                                    seed=3)
    assert same_text == text and torch.allclose(same, images)
    assert Image.open(tmp_path / "b.png").size == (2 * images.shape[-1], images.shape[-2])
    assert write_samples(tiny_bundled, "a red mug, side view", tmp_path / "c.png", steps=1)[0] == "a red mug, side view"
    with pytest.raises(ConfigError, match="--n"):
        write_samples(tmp_path / "nope", "a red mug", tmp_path / "d.png", n=0)
    assert not (tmp_path / "d.png").exists()


def test_bench_prior_runs_end_to_end_on_a_prior_directory(tiny_bundled, tmp_path):
    from PIL import Image

    from vision3d_kd.bench.prior import run

    result = run(prior_path=tiny_bundled, n_pairs=3, steps=1, batch=2, grid_path=tmp_path / "grid.png")
    s = result["summary"]
    assert s["n_pairs"] == 3 and 0.0 <= s["mean_mask_iou"] <= 1.0 and sum(r["pairs"] for r in result["rows"]) == 3
    assert Image.open(tmp_path / "grid.png").size == (3 * 32, 2 * 32)  # truth over sample, one column per pair


def test_bench_prior_on_chosen_objects_reports_each_and_refuses_unknown_words(tiny_bundled, tmp_path, capsys):
    """--objects: pairs cycle over the named objects (rows per object, with the share of samples under IoU
    0.6); a word outside the world is one line, exit 2, before any model loads."""
    from vision3d_kd.bench.prior import chosen_pairs, run

    todo = chosen_pairs(["brown table", "red house"], 4)
    assert [(p[0].colour, p[0].family) for p in todo] == [("brown", "table"), ("red", "house")] * 2
    assert todo[1][0].colour2 is not None
    result = run(prior_path=tiny_bundled, n_pairs=2, steps=1, batch=2, objects=["brown table", "gray cube"])
    rows = {r["object"]: r for r in result["rows"]}
    assert set(rows) == {"brown table", "gray cube"}
    assert all(r["pairs"] == 1 and r["iou_under_0.6"] in (0.0, 1.0) for r in rows.values())
    for bad in ("brown tabel", "table", "plaid table"):
        assert run_cli(["bench", "prior", "--objects", bad, "--out-dir", str(tmp_path)]) == 2
        one_line_error(capsys, "table" if bad != "plaid table" else "plaid")
    assert not list(tmp_path.iterdir())


def test_bench_prior_view_check_compares_with_the_object_turned_around():
    from vision3d_kd.bench.prior import _truth, score_sample
    from vision3d_kd.data.objects import ObjectSpec

    mug = ObjectSpec("mug", "red")
    gt = _truth(mug, 10.0, 0.0, 3.5, 32)["rgb"]  # front view: the handle on the right; turned: on the left
    cols = ((gt[0] - gt[1]).abs().amax(0) > 0.1).nonzero()[:, 1]
    assert (cols < 12).any() and (cols >= 20).any() and not ((cols >= 12) & (cols < 20)).any()  # body alike
    assert score_sample(mug, 10.0, 0.0, 3.5, gt[0])[0]["view_correct"] is True
    assert score_sample(mug, 10.0, 0.0, 3.5, gt[1])[0]["view_correct"] is False
    snowman = ObjectSpec("snowman", "red")
    gt = _truth(snowman, 10.0, 60.0, 3.5, 64)["rgb"]  # the nose seen from the side; turned: no nose
    assert score_sample(snowman, 10.0, 60.0, 3.5, gt[1])[0]["view_correct"] is False  # a nose-less snowman
    assert "view_correct" not in score_sample(ObjectSpec("sphere", "red"), 10.0, 0.0, 3.5, gt[0])[0]


def test_fine_tuning_starts_from_a_pipeline_and_adds_words(tmp_path, monkeypatch):
    """--init-from: the VAE and its latent scale are kept, UNet and text encoder start from the pipeline, and
    a colour new to the world gets a row after every old word's (which keep their ids and embeddings)."""
    from safetensors.torch import load_file

    from vision3d_kd.data.object_views import load_prior_shards, write_prior_dataset
    from vision3d_kd.data.objects import COLOURS
    from vision3d_kd.guidance.bundled import vocabulary
    from vision3d_kd.guidance.prior_training import PriorTrainConfig, train_prior

    white = COLOURS["white"]
    for c in ("white", "black"):  # the first world, without them
        monkeypatch.delitem(COLOURS, c)
    images, meta = load_prior_shards(write_prior_dataset(tmp_path / "data", 4, views_per_object=2, size=32, seed=1))
    base = train_prior(images, meta, tmp_path / "w0", tmp_path / "p0",
                       PriorTrainConfig(size="tiny", batch=2, vae_steps=1, unet_steps=1))
    old_vocab = vocabulary()
    monkeypatch.setitem(COLOURS, "white", white)  # white joins the world
    assert "white" not in old_vocab and vocabulary() == [*old_vocab, "white"]
    with pytest.raises(ConfigError, match="vae-steps 0"):
        PriorTrainConfig(size="tiny", init_from=str(base)).validate()
    tuned = train_prior(images, meta, tmp_path / "w1", tmp_path / "p1",
                        PriorTrainConfig(size="tiny", batch=2, vae_steps=0, unet_steps=0, init_from=str(base)))
    a, b = DiffusersPrior(base), DiffusersPrior(tuned)
    assert b.tokenizer.get_vocab()["white"] == len(old_vocab)
    ea, eb = (p.text_encoder.get_input_embeddings().weight for p in (a, b))
    assert eb.shape[0] == ea.shape[0] + 1 and torch.equal(eb[: ea.shape[0]], ea)
    colour_rows = [a.tokenizer.get_vocab()[c] for c in COLOURS if c != "white"]
    assert torch.allclose(eb[-1].float(), ea[colour_rows].float().mean(0), atol=1e-2)
    assert a.vae.config.scaling_factor == b.vae.config.scaling_factor
    assert "_name_or_path" not in (tuned / "vae" / "config.json").read_text()  # no path of this machine
    ua, ub = (load_file(str(p / "unet" / "diffusion_pytorch_model.safetensors")) for p in (base, tuned))
    assert all(torch.equal(ua[k], ub[k]) for k in ua)  # 0 steps: the UNet is the pipeline's
    emb = b.text_embeddings(["a white mug"])  # the new word is a word, not [UNK]
    assert b.tokenizer.unk_token_id not in b.tokenizer(["a white mug"]).input_ids[0] and emb.cond.isfinite().all()
    train_prior(images, meta, tmp_path / "w2", tmp_path / "p2",  # and training from it runs
                PriorTrainConfig(size="tiny", batch=2, vae_steps=0, unet_steps=1, init_from=str(base)))
