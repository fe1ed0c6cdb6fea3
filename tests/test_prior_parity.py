"""DiffusersPrior against the diffusers pipelines' own code, on tiny pipelines with the real models' structure
(tests/tiny_pipelines.py): text embeddings equal the pipeline's `encode_prompt`, and guided noise equals the
pipeline's own UNet call + classifier-free guidance (+ the scheduler's v → ε), max abs diff ≤ 1e-5 in fp32 —
for SD 1.x, SD 2.x (v-prediction), SDXL (two encoders, pooled text, time ids) and IF stage I (T5 + mask);
prompts, negatives, empty and over-long prompts; and the fp16 / bf16 load paths (variant files)."""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch

from tests.tiny_pipelines import save_tiny_if, save_tiny_sd, save_tiny_sd2v, save_tiny_sdxl
from vision3d_kd.errors import DataError
from vision3d_kd.guidance.diffusers_prior import DiffusersPrior

KINDS = {"sd1": save_tiny_sd, "sd2v": save_tiny_sd2v, "sdxl": save_tiny_sdxl, "if": save_tiny_if}
LONG = "a red mug, front view, a blue ball, back view, " * 4  # far past 12 (CLIP) and 77 (T5) tokens
CASES = [  # (prompts, negative as given to DiffusersPrior and to the pipeline)
    (["a red mug"], None),
    (["a blue ball, back view", "A Red Mug "], "a red mug"),
    ([""], None),
    ([LONG], ""),
]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    return {k: save(tmp_path_factory.mktemp(k)) for k, save in KINDS.items()}


def _pipeline(kind: str, path):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(path).to("cpu")


def _reference_embeddings(kind: str, pipe, prompts: list[str], negative):
    """(cond, uncond, pooled, pooled_uncond) from the pipeline's own encode_prompt."""
    negative = [negative] * len(prompts) if isinstance(negative, str) else negative  # it wants a list, as prompts
    if kind == "sdxl":
        return pipe.encode_prompt(prompts, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
                                  negative_prompt=negative)
    if kind == "if":
        cond, uncond = pipe.encode_prompt(prompts, do_classifier_free_guidance=True, device="cpu",
                                          negative_prompt=negative, clean_caption=False)
    else:
        cond, uncond = pipe.encode_prompt(prompts, "cpu", 1, True, negative_prompt=negative)
    return cond, uncond, None, None


def _reference_noise(kind: str, pipe, x_t, t: int, embs, scale: float):
    """Guided ε as the pipeline's denoising loop computes it: one UNet call on [uncond, cond], CFG on the raw
    output (IF: on its ε channels), then the scheduler's v → ε (DDIM's formula) for v-prediction."""
    cond, uncond, pooled, pooled_u = embs
    b = x_t.shape[0]
    kwargs = {}
    if kind == "sdxl":
        size = pipe.default_sample_size * pipe.vae_scale_factor
        ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), dtype=cond.dtype,
                                     text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.cat([pooled_u, pooled]), "time_ids": ids.repeat(2 * b, 1)}
    out = pipe.unet(torch.cat([x_t, x_t]), t, encoder_hidden_states=torch.cat([uncond, cond]), **kwargs).sample
    u, c = out.chunk(2)
    if kind == "if":
        u, c = u[:, :3], c[:, :3]
    guided = u + scale * (c - u)
    if pipe.scheduler.config.prediction_type == "v_prediction":
        a = pipe.scheduler.alphas_cumprod[t]
        guided = a**0.5 * guided + (1 - a) ** 0.5 * x_t
    return guided


@pytest.mark.parametrize("kind", list(KINDS))
def test_prior_matches_the_pipelines_own_code(pipelines, kind):
    pipe, prior = _pipeline(kind, pipelines[kind]), DiffusersPrior(pipelines[kind])
    g = torch.Generator().manual_seed(0)
    for prompts, negative in CASES:
        emb = prior.text_embeddings(prompts, negative)
        ref = _reference_embeddings(kind, pipe, prompts, negative)
        assert (emb.cond - ref[0]).abs().max() <= 1e-5 and (emb.uncond - ref[1]).abs().max() <= 1e-5, prompts
        if kind == "sdxl":
            assert (emb.pooled - ref[2]).abs().max() <= 1e-5 and (emb.pooled_uncond - ref[3]).abs().max() <= 1e-5
            assert emb.cond.shape[-1] == 64 and (negative is not None or not emb.uncond.any())  # force_zeros
        else:
            assert emb.pooled is None
        x_t = torch.randn(len(prompts), prior.channels, prior.sample_size, prior.sample_size, generator=g)
        for t, scale in ((37, 7.5), (801, 100.0)):
            ours = prior.predict_noise(x_t, torch.full((len(prompts),), t), emb, guidance_scale=scale)
            with torch.no_grad():
                theirs = _reference_noise(kind, pipe, x_t, t, ref, scale)
            assert (ours - theirs).abs().max() <= 1e-5 * max(1.0, theirs.abs().max()), (prompts, t, scale)
    if kind == "if":  # the T5 attention mask matters: without it the embeddings differ
        ids = prior.tokenizer(["a red mug"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        unmasked = prior.text_encoder(ids)[0]
        assert (unmasked - prior.text_embeddings(["a red mug"]).cond).abs().max() > 1e-2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sixteen_bit_loading_uses_variant_files(pipelines, tmp_path, dtype):
    """A checkout holding only `fp16` variant files loads (the plain names are absent), in fp16 or bf16,
    and its noise prediction follows the fp32 prior's within the format's precision (measured on this pipeline,
    5 draws: relative L2 error 0.12-0.15 % in fp16, 1.1-1.3 % in bf16 unguided; CFG at 7.5 multiplies both
    by about 5, as it amplifies the small cond - uncond difference of a random network)."""
    from diffusers import DiffusionPipeline

    src = pipelines["sdxl"]
    half = tmp_path / "fp16-only"
    DiffusionPipeline.from_pretrained(src, torch_dtype=torch.float16).save_pretrained(half, variant="fp16")
    assert any(half.glob("unet/*.fp16.safetensors")) and not any(half.glob("unet/diffusion_pytorch_model.safetensors"))
    prior, ref = DiffusersPrior(half, dtype=dtype), DiffusersPrior(src)
    assert prior.unet.dtype == dtype and prior.text_encoder.dtype == dtype
    assert prior.vae.dtype == (torch.float32 if dtype == torch.float16 else dtype)  # force_upcast: fp32 for fp16
    emb, emb32 = prior.text_embeddings(["a red mug"]), ref.text_embeddings(["a red mug"])
    assert emb.cond.dtype == dtype
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    eps = prior.predict_noise(x_t, torch.tensor([500]), emb, guidance_scale=1.0)
    eps32 = ref.predict_noise(x_t, torch.tensor([500]), emb32, guidance_scale=1.0)
    assert eps.dtype == torch.float32
    rel = (eps - eps32).norm() / eps32.norm()
    assert 0 < rel < (0.004 if dtype == torch.float16 else 0.03), float(rel)
    z = prior.encode(torch.rand(1, 3, 32, 32))
    assert z.dtype == dtype and torch.isfinite(z).all()
    # fp32 asked of an fp16-only checkout: the variant files are read and upcast
    assert DiffusersPrior(half).unet.dtype == torch.float32


def test_sharded_weights_are_accepted_and_a_checkout_without_weights_is_not(pipelines, tmp_path):
    from diffusers import UNet2DConditionModel

    sharded = tmp_path / "sharded"
    shutil.copytree(pipelines["sd1"], sharded)
    shutil.rmtree(sharded / "unet")
    UNet2DConditionModel.from_pretrained(pipelines["sd1"] / "unet").save_pretrained(sharded / "unet",
                                                                                     max_shard_size="100KB")
    assert (sharded / "unet" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    x_t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    a, b = DiffusersPrior(sharded), DiffusersPrior(pipelines["sd1"])
    emb = b.text_embeddings(["a red mug"])
    assert torch.equal(a.predict_noise(x_t, torch.tensor([9]), emb), b.predict_noise(x_t, torch.tensor([9]), emb))
    for f in (sharded / "unet").glob("*.safetensors*"):
        f.unlink()
    with pytest.raises(DataError, match="'unet' has no weights"):
        DiffusersPrior(sharded)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_score_distillation_steps_on_sdxl_with_fp32_master_weights(pipelines, dtype):
    """SDS, VSD and BSD take a step through an SDXL prior (pooled text and time ids reach the UNet and VSD's
    LoRA copy); with a bf16 prior the LoRA and camera MLP still train in float32 and the copied UNet stays bf16."""
    from vision3d_kd.guidance.bsd import BSD
    from vision3d_kd.guidance.prior import CameraCondition
    from vision3d_kd.guidance.prompts import ViewPrompts
    from vision3d_kd.guidance.sds import SDS, GuidanceConfig
    from vision3d_kd.guidance.vsd import VSD

    prior = DiffusersPrior(pipelines["sdxl"], dtype=dtype)
    cam = CameraCondition(torch.tensor([10.0, 20.0]), torch.tensor([0.0, 170.0]), torch.tensor([3.5, 3.5]))
    emb = ViewPrompts(prior, "a red mug").for_cameras(cam)
    assert emb.pooled.shape == (2, 16) and emb.pooled_plain.shape == (2, 16) and not emb.uncond.any()
    g = torch.Generator().manual_seed(0)
    for cls in (SDS, VSD, BSD):
        guide = cls(prior, GuidanceConfig(lora_steps=1))
        images = torch.rand(2, 3, 32, 32, requires_grad=True)
        loss, info = guide.loss(images, emb, cam, 0.5, g)
        loss.backward()
        assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0, cls.name
        if cls is VSD:
            trainable = guide.lora.trainable()
            assert trainable and all(p.dtype == torch.float32 for p in trainable)
            assert guide.lora.unet.conv_in.weight.dtype == dtype and math.isfinite(info["lora_loss"])


def test_generate_and_sample_take_an_sdxl_or_if_checkout_and_a_dtype(pipelines, tmp_path, capsys):
    from tests.conftest import one_line_error, run_cli

    fast = ["--steps", "2", "--set", "generate.size=32", "--set", "generate.checkpoint_every=1", "--no-mesh",
            "--no-video", "--quiet"]
    out = tmp_path / "xl"
    assert run_cli(["generate", "a red mug", "--method", "vsd", "--prior", str(pipelines["sdxl"]), "--dtype", "bf16",
                    "--out", str(out), *fast]) == 0
    import json

    assert json.loads((out / "config.json").read_text())["generate"]["generate"]["prior_dtype"] == "bf16"
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    assert run_cli(["generate", "a red mug", "--dtype", "fp8", "--out", str(tmp_path / "bad"), *fast]) == 2
    one_line_error(capsys, "fp8")
    assert not (tmp_path / "bad" / "weights.safetensors").exists()
    png = tmp_path / "if.png"
    assert run_cli(["prior", "sample", "A Red Mug", "--prior", str(pipelines["if"]), "--dtype", "bf16", "--steps",
                    "2", "--out", str(png)]) == 0 and png.is_file()
    assert run_cli(["prior", "sample", "a red mug", "--dtype", "half", "--out", str(png)]) == 2
    one_line_error(capsys, "--dtype")


def test_t5_keeps_its_fp32_layers_in_a_half_precision_if_prior(pipelines):
    """transformers loads T5's feed-forward output ("wo", `_keep_in_fp32_modules`) in fp32 when asked for fp16;
    the prior must not cast it back (it overflows in fp16), and its embeddings stay finite."""
    prior = DiffusersPrior(pipelines["if"], dtype=torch.float16)
    ff = prior.text_encoder.encoder.block[0].layer[-1].DenseReluDense
    assert ff.wo.weight.dtype == torch.float32 and ff.wi_0.weight.dtype == torch.float16
    emb = prior.text_embeddings(["a red mug"])
    assert emb.cond.dtype == torch.float16 and torch.isfinite(emb.cond).all()


@pytest.mark.skipif(os.environ.get("V3KD_SLOW") != "1", reason="real widths (SD-1.5: 4 GB, SDXL: 14 GB in fp32; "
                    "minutes on a CPU): set V3KD_SLOW=1")
@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_parity_at_the_real_widths(kind, tmp_path):
    """The same parity at the published shapes (random weights; `v3kd bench prior-cost`'s builders), the
    pipeline and the prior sharing the modules."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from vision3d_kd.bench.prior_cost import build_modules

    torch.manual_seed(0)
    modules = build_modules("sd15" if kind == "sd1" else "sdxl", False, tmp_path)
    if kind == "sd1":
        pipe = StableDiffusionPipeline(**modules, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLPipeline(**modules, add_watermarker=False)
    prior = DiffusersPrior.from_modules(modules, name=kind)
    g = torch.Generator().manual_seed(0)
    for prompts, negative in CASES[:2] + CASES[3:]:
        emb = prior.text_embeddings(prompts, negative)
        with torch.no_grad():
            ref = _reference_embeddings(kind, pipe, prompts, negative)
        assert (emb.cond - ref[0]).abs().max() <= 1e-5 and (emb.uncond - ref[1]).abs().max() <= 1e-5, prompts
        x_t = torch.randn(len(prompts), 4, 64, 64, generator=g)  # 512 px
        ours = prior.predict_noise(x_t, torch.full((len(prompts),), 500), emb, guidance_scale=7.5)
        with torch.no_grad():
            theirs = _reference_noise(kind, pipe, x_t, 500, ref, 7.5)
        assert (ours - theirs).abs().max() <= 1e-5 * max(1.0, float(theirs.abs().max())), prompts


class _Unsafe:
    def __reduce__(self):
        return (print, ("UNSAFE: pickle code ran",))


def test_a_pickled_weight_file_is_refused_without_running_it(pipelines, tmp_path, capsys):
    """A pipeline whose UNet weights are a pickle that would run code on load (as bad_inputs'
    run_pickle_checkpoint): a one-line DataError naming the component, and the code never runs."""
    import pickle

    broken = tmp_path / "pickled"
    shutil.copytree(pipelines["sd1"], broken)
    for f in (broken / "unet").glob("*.safetensors"):
        f.unlink()
    (broken / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"conv_in.weight": _Unsafe()}))
    with pytest.raises(DataError, match="'unet'") as err:
        DiffusersPrior(broken)
    assert "\n" not in str(err.value) and "UNSAFE" not in capsys.readouterr().out
