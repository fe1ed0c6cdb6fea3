"""The real-model adapters against the real source, when a local checkout is given (skipped otherwise):
V3KD_VGGT_SRC — a checkout of facebookresearch/vggt (its `vggt/` package importable; needs einops);
V3KD_SV3D_SRC — a checkout of Stability-AI/generative-models (needs einops, fsspec, packaging).
The models are built with random weights (nothing is downloaded). VGGT: the adapter's tokens, depth and
confidence against the layers and heads it claims to read and VGGT's own forward. SV3D: the adapter's
denoiser, conditioning vector and guidance against generative-models' own Denoiser, VScalingWithEDMcNoise,
OpenAIWrapper, Timestep embedder and TrianglePredictionGuider around the same VideoUNet."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

VGGT_SRC = os.environ.get("V3KD_VGGT_SRC")
SV3D_SRC = os.environ.get("V3KD_SV3D_SRC")


@pytest.mark.skipif(not VGGT_SRC, reason="set V3KD_VGGT_SRC to a local checkout of facebookresearch/vggt")
def test_vggt_adapter_reads_the_layers_and_heads_it_claims():
    from vision3d_kd.distill.event_vggt.teacher import VGGTTeacher

    sys.path.insert(0, VGGT_SRC)
    try:
        from vggt.models.vggt import VGGT
    finally:
        sys.path.remove(VGGT_SRC)
    torch.manual_seed(0)
    model = VGGT().eval()  # the released architecture (VGGT-1B), random weights
    teacher = VGGTTeacher.from_model(model)
    # the depth head reads exactly the aggregator layers whose tokens the adapter hands to the student
    assert list(model.depth_head.intermediate_layer_idx) == list(VGGTTeacher.LAYERS)
    seen = {}
    hook = model.depth_head.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(tokens=args[0], start=kwargs["patch_start_idx"]), with_kwargs=True)
    frames = torch.rand(1, 2, 3, 12, 20, generator=torch.Generator().manual_seed(1))
    out = teacher(frames)
    hook.remove()
    x = teacher.preprocess(frames)
    h, w = x.shape[-2] // 14, x.shape[-1] // 14
    assert out["grid"] == (h, w) and x.shape[-1] == 518 and x.shape[-2] % 14 == 0
    assert seen["start"] == 1 + model.aggregator.register_token.shape[-2]  # camera token + register tokens
    assert len(out["tokens"]) == 4
    for picked, layer in zip(out["tokens"], VGGTTeacher.LAYERS, strict=True):
        assert picked.shape == (1, 2, h * w, 2 * 1024)  # frame- and global-attention outputs, patch tokens only
        assert torch.equal(picked, seen["tokens"][layer][:, :, seen["start"]:].float())
    with torch.no_grad():
        own = model(x)  # VGGT's own forward on the adapter's input: the same depth and confidence
    back = lambda m: F.interpolate(m.reshape(2, 1, *x.shape[-2:]), size=(12, 20), mode="bilinear",  # noqa: E731
                                   align_corners=False).reshape(1, 2, 12, 20)
    assert torch.allclose(out["depth"], back(own["depth"][..., 0]), rtol=1e-4, atol=1e-5)
    assert torch.allclose(out["confidence"], back(own["depth_conf"]), rtol=1e-4, atol=1e-5)
    assert (out["depth"] > 0).all() and (out["confidence"] >= 1).all()  # exp and 1 + exp activations
    assert torch.allclose(out["log_depth"], out["depth"].log())


@pytest.mark.skipif(not SV3D_SRC, reason="set V3KD_SV3D_SRC to a local checkout of Stability-AI/generative-models")
def test_sv3d_adapter_equals_generative_models_own_denoiser_and_guidance():
    import importlib

    from vision3d_kd.distill.gsv3d.sv3d import SV3DDenoiser, default_orbit, triangle_scales

    torch.manual_seed(0)
    ours = SV3DDenoiser.from_checkout(SV3D_SRC, variant="p")
    assert sum(p.numel() for p in ours.unet.parameters()) == 1_525_278_442  # SV3D_p's UNet
    sgm = "sgm.modules.diffusionmodules."
    denoiser = importlib.import_module(sgm + "denoiser").Denoiser(
        {"target": sgm + "denoiser_scaling.VScalingWithEDMcNoise"})
    wrapped = importlib.import_module(sgm + "wrappers").OpenAIWrapper(ours.unet, compile_model=False)
    timestep = importlib.import_module(sgm + "openaimodel").Timestep
    guider = importlib.import_module(sgm + "guiders").TrianglePredictionGuider(max_scale=2.5, num_frames=21)

    g = torch.Generator().manual_seed(1)
    t, h = 21, 8  # the trained frame count; a small latent (the UNet is convolutional) keeps it quick
    elevation, azimuth = default_orbit(10.0)
    assert azimuth[-1] == 0 and torch.allclose(azimuth[0], torch.tensor(360 / 21))
    x = torch.randn(1, t, 4, h, h, generator=g)
    clip, cond = torch.randn(1, 1024, generator=g), torch.randn(1, 4, h, h, generator=g)
    # the vector as SV3D_p's conditioner builds it: cond_aug, polar = 90° − elevation, azimuth (radians)
    vector = torch.cat([timestep(256)(torch.full((t,), 1e-5)), timestep(512)(torch.deg2rad(90 - elevation)),
                        timestep(512)(torch.deg2rad(azimuth))], dim=-1)
    assert torch.allclose(ours.camera_vector(elevation[None], azimuth[None]), vector, atol=1e-6)
    c = {"crossattn": clip.repeat(t, 1)[:, None], "concat": cond.repeat(t, 1, 1, 1), "vector": vector}
    uc = {"crossattn": torch.zeros_like(c["crossattn"]), "concat": torch.zeros_like(c["concat"]), "vector": vector}
    rows = x.reshape(t, 4, h, h)
    for sigma in (0.5, 40.0):
        s = torch.full((t,), sigma)
        with torch.no_grad():
            plain = denoiser(wrapped, rows, s, c, num_video_frames=t, image_only_indicator=torch.zeros(1, t))
            x2, s2, c2 = guider.prepare_inputs(rows, s, c, uc)
            guided = guider(denoiser(wrapped, x2, s2, c2, num_video_frames=t,
                                     image_only_indicator=torch.zeros(2, t)), s2)
        mine = ours.denoise(x, torch.tensor([sigma]), clip, cond, elevation[None], azimuth[None])
        assert torch.allclose(mine.reshape(t, 4, h, h), plain, rtol=1e-4, atol=1e-5), sigma
        mine = ours.denoise(x, torch.tensor([sigma]), clip, cond, elevation[None], azimuth[None], triangle_scales(t))
        assert torch.allclose(mine.reshape(t, 4, h, h), guided, rtol=1e-4, atol=1e-5), sigma


def test_sv3d_schedules_and_orbit_without_a_checkout():
    """What needs no checkout: SV3D's per-frame guidance 1 + 0.15·min(i, 20 − i) at max 2.5, the default orbit
    (17.14° steps, the input view last at 0°), Karras σ from 700 to 0.002 then 0, cos-first sinusoids."""
    from vision3d_kd.distill.gsv3d.sv3d import default_orbit, karras_sigmas, sinusoid, triangle_scales

    i = torch.arange(21).float()
    assert torch.allclose(triangle_scales(21), 1 + 0.15 * torch.minimum(i, 20 - i), atol=1e-6)
    elevation, azimuth = default_orbit(5.0)
    assert (elevation == 5).all() and azimuth[-1] == 0 and torch.allclose(azimuth[:-1].diff(), torch.tensor(360 / 21))
    sig = karras_sigmas(50)
    assert sig.shape == (51,) and abs(sig[0] - 700) < 1e-3 and abs(sig[-2] - 0.002) < 1e-6 and sig[-1] == 0
    assert (sig[:-1].diff() < 0).all()
    emb = sinusoid(torch.tensor([0.0, 1.0]), 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4)) and abs(emb[1, 0] - math.cos(1.0)) < 1e-6


def test_sv3d_generator_has_the_bundled_generators_interface():
    """SV3DGenerator on a stand-in with VideoUNet's call signature (x, σ-noise, context, y, frames, indicator):
    shapes, the input latent concatenated to every frame, the camera vector's width, and decode/encode round
    trips through a diffusers VAE; the real SV3D never ran here (its weights cannot be downloaded)."""
    from diffusers import AutoencoderKL

    from vision3d_kd.distill.gsv3d.sv3d import SV3DDenoiser, SV3DGenerator

    seen = {}

    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x, timesteps, context=None, y=None, num_video_frames=None, image_only_indicator=None):
            seen.update(channels=x.shape[1], y=y.shape[1], context=tuple(context.shape[1:]), frames=num_video_frames)
            return self.w * x[:, :4]

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    gen = SV3DGenerator(SV3DDenoiser(StandIn(), "p"), vae, lambda im: torch.ones(im.shape[0], 1024), radius=2.0,
                        fov_deg=33.8, size=16)
    images = torch.rand(2, 3, 16, 16)
    lat = gen.sample(images, torch.tensor([10.0, 20.0]), torch.tensor([0.0, 120.0, 240.0]), steps=3,
                     generator=torch.Generator().manual_seed(0))
    assert lat.shape == (2, 3, 4, 8, 8) and torch.isfinite(lat).all()
    assert seen == {"channels": 8, "y": 256 + 512 + 512, "context": (1, 1024), "frames": 3}
    assert gen.decode(lat[0]).shape == (3, 3, 16, 16) and gen.encode(images).shape == (2, 4, 8, 8)
