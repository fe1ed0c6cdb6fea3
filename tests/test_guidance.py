"""Score-distillation arithmetic: SDS, BSD and VSD gradients equal their formulas on fixed prior outputs
(a mock prior with known noise predictions, for the arithmetic only), the surrogate injects g / B,
timestep schedules and weightings, view-dependent prompts, and VSD's LoRA on a tiny real pipeline
(LoRA and camera embedding train, the prior does not)."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_pipelines import save_tiny_sd
from vision3d_kd.errors import ConfigError, NumericalError
from vision3d_kd.guidance.bsd import BSD, balanced_direction
from vision3d_kd.guidance.prior import CameraCondition, DiffusionPrior, PromptEmbeddings
from vision3d_kd.guidance.schedules import TimestepSchedule, weighting
from vision3d_kd.guidance.sds import SDS, GuidanceConfig, surrogate_loss


class MockPrior(DiffusionPrior):
    """Pixel-space prior with known outputs: ε_∅ = 0.3 x_t, ε_c = 0.3 x_t + 0.05 (t / T) · text code."""

    channels, sample_size, image_size = 3, 8, 8

    def __init__(self) -> None:
        self.alphas_cumprod = torch.linspace(0.999, 0.01, 1000)

    def text_embeddings(self, prompts, negative=""):
        cond = torch.stack([torch.full((2, 3), float(len(p))) for p in prompts])
        return PromptEmbeddings(cond, torch.zeros_like(cond))

    def encode(self, images):
        return images * 2 - 1

    def decode(self, x0):
        return (x0 + 1) / 2

    def model_output(self, x_t, t, emb, camera, pooled=None):
        code = emb[:, 0, :].reshape(-1, 3, 1, 1)
        return 0.3 * x_t + 0.05 * (t.float() / 1000).reshape(-1, 1, 1, 1) * code


def fixed_inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    prior = MockPrior()
    z = torch.randn(b, 3, 8, 8, generator=g)
    noise = torch.randn(b, 3, 8, 8, generator=g)
    t = torch.tensor([100, 700][:b])
    x_t = prior.add_noise(z, noise, t)
    emb = prior.text_embeddings(["a red mug", "a ball"][:b])
    eps_u = 0.3 * x_t
    eps_c = eps_u + 0.05 * (t.float() / 1000).reshape(-1, 1, 1, 1) * emb.cond[:, 0, :].reshape(-1, 3, 1, 1)
    abar = prior.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    return prior, z, noise, t, x_t, emb, eps_u, eps_c, abar


@pytest.mark.parametrize("weight", ["sds", "uniform", "fantasia"])
def test_sds_gradient_is_weighted_cfg_residual(weight):
    prior, z, noise, t, x_t, emb, eps_u, eps_c, abar = fixed_inputs()
    cfg = GuidanceConfig(guidance_scale=20.0, weighting=weight)
    g = SDS(prior, cfg).gradient(z, x_t, noise, t, emb, None)
    w = {"sds": 1 - abar, "uniform": torch.ones_like(abar), "fantasia": abar.sqrt() * (1 - abar)}[weight]
    assert torch.allclose(g, w * (eps_u + 20.0 * (eps_c - eps_u) - noise), atol=1e-5)


def test_bsd_gradient_is_the_min_norm_point_between_classifier_and_smoothing_directions():
    prior, z, noise, t, x_t, emb, eps_u, eps_c, abar = fixed_inputs()
    lam = 15.0
    g = BSD(prior, GuidanceConfig(bsd_lambda=lam)).gradient(z, x_t, noise, t, emb, None)
    for i in range(2):
        gc, gd = lam * (eps_c[i] - eps_u[i]), eps_u[i]
        alpha = float(((gd - gc) * gd).sum() / ((gd - gc) ** 2).sum())
        alpha = min(max(alpha, 0.0), 1.0)
        want = abar[i].sqrt() * (alpha * gc + (1 - alpha) * gd)
        assert torch.allclose(g[i], want, atol=1e-5)
    # the combination is never longer than either direction, and clamps to an end point
    gc, gd = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    comb, alpha = balanced_direction(gc, gd)
    norms = comb.flatten(1).norm(dim=1)
    assert (norms <= gc.flatten(1).norm(dim=1) + 1e-5).all() and (norms <= gd.flatten(1).norm(dim=1) + 1e-5).all()
    same, a0 = balanced_direction(gd, gd)
    assert torch.equal(same, gd) and (a0 == 0).all()
    _, a1 = balanced_direction(torch.zeros_like(gd), gd)  # the zero vector is the min-norm point: α = 1
    assert torch.allclose(a1, torch.ones(4))


def test_surrogate_injects_the_gradient_over_the_batch():
    z = torch.randn(3, 4, 5, 5, requires_grad=True)
    g = torch.randn(3, 4, 5, 5)
    surrogate_loss(z, g).backward()
    assert torch.allclose(z.grad, g / 3)


def test_loss_encodes_images_and_clips_the_gradient(monkeypatch):
    prior = MockPrior()
    guidance = SDS(prior, GuidanceConfig(grad_clip=0.01))
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    fixed = torch.linspace(-1, 1, 2 * 3 * 64).reshape(2, 3, 8, 8)
    monkeypatch.setattr(guidance, "gradient", lambda *a: fixed)
    loss, info = guidance.loss(images, prior.text_embeddings(["a", "b"]), None, 0.0, torch.Generator().manual_seed(0))
    loss.backward()
    # d(encode)/d(image) = 2, so the image gradient is 2 · clip(g) / B
    assert torch.allclose(images.grad, 2 * fixed.clamp(-0.01, 0.01) / 2)
    assert 20 <= info["t"] <= 980
    monkeypatch.setattr(guidance, "gradient", lambda *a: fixed * float("nan"))
    with pytest.raises(NumericalError):
        guidance.loss(images, prior.text_embeddings(["a", "b"]), None, 0.0)


def test_timestep_schedules_and_weightings():
    s = TimestepSchedule(0.02, 0.98, t_max_end=0.5, warmup=0.3, anneal="drop")
    assert s.bounds(0.1) == (0.02, 0.98) and s.bounds(0.5) == (0.02, 0.5)
    lin = TimestepSchedule(0.02, 0.98, t_max_end=0.5, warmup=0.4, anneal="linear")
    assert lin.bounds(0.2)[1] == pytest.approx(0.74) and lin.bounds(0.9)[1] == pytest.approx(0.5)
    t = s.sample(5000, 0.9, 1000, torch.Generator().manual_seed(0))
    assert int(t.min()) >= 20 and int(t.max()) <= 500 and int(t.max()) >= 480
    a = torch.tensor([0.25])
    assert float(weighting("fantasia", a)) == pytest.approx(0.5 * 0.75)
    with pytest.raises(ConfigError):
        TimestepSchedule(0.5, 0.4)
    with pytest.raises(ConfigError):
        GuidanceConfig(weighting="nope").validate()


def test_view_prompts_follow_the_dreamfusion_rule():
    from vision3d_kd.guidance.prompts import ViewPrompts

    prior = MockPrior()
    vp = ViewPrompts(prior, "a red mug")
    cam = CameraCondition(torch.tensor([10.0, 10.0, 10.0, 70.0]), torch.tensor([20.0, 90.0, -170.0, 0.0]),
                          torch.full((4,), 3.5))
    emb = vp.for_cameras(cam)
    want = ["a red mug, front view", "a red mug, side view", "a red mug, back view", "a red mug, overhead view"]
    assert torch.equal(emb.cond, prior.text_embeddings(want).cond)
    assert vp.text_for(10.0, 200.0) == "a red mug, back view"


@pytest.fixture(scope="module")
def tiny_camera_prior(tmp_path_factory):
    from vision3d_kd.guidance.diffusers_prior import DiffusersPrior

    return DiffusersPrior(save_tiny_sd(tmp_path_factory.mktemp("sdcam"), camera=True))


def test_vsd_starts_from_the_prior_and_trains_only_its_lora(tiny_camera_prior):
    from vision3d_kd.guidance.vsd import VSD

    prior = tiny_camera_prior
    # the angles encoding's zero-initialised camera MLP makes a fresh copy equal to the prior
    vsd = VSD(prior, GuidanceConfig(guidance_scale=7.5, lora_lr=1e-2, vsd_camera="angles"))
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([300, 600])
    emb = prior.text_embeddings(["a red mug", "a blue ball"])
    cam = CameraCondition(torch.tensor([10.0, 30.0]), torch.tensor([0.0, 120.0]), torch.tensor([3.5, 3.5]))
    eps_u, eps_c = prior.predict_noise_pair(x_t, t, emb, cam)
    # a fresh LoRA copy (B = 0, zero camera MLP) predicts the prior's conditional ε, so g = w (s − 1)(ε_c − ε_∅)
    w = (1 - prior.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    grad = vsd.gradient(None, x_t, None, t, emb, cam)
    assert torch.allclose(grad, w * 6.5 * (eps_c - eps_u), atol=1e-4)
    # the LoRA reads the bare prompt when the embeddings carry it (the prior keeps the view-dependent one)
    from vision3d_kd.guidance.prior import PromptEmbeddings
    from vision3d_kd.guidance.prompts import ViewPrompts

    bare = ViewPrompts(prior, "a red mug").for_cameras(cam)
    assert bare.plain is not None and not torch.allclose(bare.plain, bare.cond)
    _, eps_bare = prior.predict_noise_pair(x_t, t, PromptEmbeddings(bare.plain, bare.uncond), cam)
    eps_u2, eps_c2 = prior.predict_noise_pair(x_t, t, bare, cam)
    assert torch.allclose(vsd.gradient(None, x_t, None, t, bare, cam),
                          w * (eps_u2 + 7.5 * (eps_c2 - eps_u2) - eps_bare), atol=1e-4)
    prior_before = {k: v.clone() for k, v in prior.unet.state_dict().items()}
    lora_before = vsd.state_dict()
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    for _ in range(2):
        loss, info = vsd.loss(images, emb, cam, 0.0, g)
        loss.backward()
    assert "lora_loss" in info and images.grad is not None and torch.isfinite(images.grad).all()
    assert all(torch.equal(prior_before[k], v) for k, v in prior.unet.state_dict().items())
    after = vsd.state_dict()
    changed = [k for k in lora_before if not torch.equal(after[k], lora_before[k])]
    assert any("lora_B" in k for k in changed) and any("camera_mlp" in k for k in changed)
    assert all(("lora_" in k) or ("camera_mlp" in k) or k.startswith("adam.") for k in after)
    assert any(k.startswith("adam.") and k.endswith("exp_avg_sq") for k in after)  # checkpoints carry the moments
    # after training, the copy no longer equals the prior
    assert not torch.allclose(vsd.gradient(None, x_t, None, t, emb, cam), grad, atol=1e-6)


def test_vsd_camera_is_the_papers_flattened_camera_to_world_and_dropout_hides_the_whole_batch(tiny_camera_prior):
    from vision3d_kd.guidance.vsd import VSD, camera_to_world

    cam = CameraCondition(torch.tensor([10.0, -30.0, 60.0]), torch.tensor([0.0, 120.0, -75.0]),
                          torch.tensor([3.5, 2.0, 4.0]))
    c2w = camera_to_world(cam)
    back = CameraCondition.from_c2w(c2w)  # the inverse: the camera sits at (elevation, azimuth, radius)
    for name in ("elevation_deg", "azimuth_deg", "radius"):
        assert torch.allclose(getattr(back, name), getattr(cam, name), atol=1e-4)
    assert torch.allclose(c2w[:, :3, 2], c2w[:, :3, 3] / cam.radius[:, None], atol=1e-5)  # OpenGL: +z points back
    vsd = VSD(tiny_camera_prior, GuidanceConfig(guidance_scale=7.5, camera_dropout=0.5))
    first, last = vsd.lora.camera_mlp[0], vsd.lora.camera_mlp[2]
    assert first.in_features == 16 and last.weight.abs().sum() > 0  # PyTorch's default init, as the paper's code
    seen = []
    forward = vsd.lora.forward
    vsd.lora.forward = lambda *a: seen.append(a[4].clone()) or forward(*a)
    emb = tiny_camera_prior.text_embeddings(["a red mug"] * 3)
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        vsd.after_step(torch.randn(3, 4, 16, 16, generator=g), emb, cam, g)
    assert all(h.all() or not h.any() for h in seen)  # one draw for the batch
    assert 0 < sum(bool(h.all()) for h in seen) < len(seen)
