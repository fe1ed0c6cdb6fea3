"""`v3kd bench prior-cost`: what one score-distillation step costs with a real diffusion model's shape on this
machine, before anyone starts a run: Stable-Diffusion-1.5-shaped and SDXL-shaped pipelines built with random
weights (no weights are downloaded; the cost depends on the shapes, not the values), one SDS, VSD and BSD step
(prior forward, VSD's LoRA update, the backward through the VAE encoder to the 512-px image) in fp32 and
bf16, each in its own process: seconds per step (median of the timed steps after one warm-up), the warm-up
step, building time, and the process's peak resident memory. One more process measures how far the SDS
gradient of fp16 / bf16 copies of the SD-1.5-shaped prior is from fp32's (same weights, noise and t).

--quick: the same architectures at 1/10 width and 128 px (a smoke run; its numbers mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["run", "SHAPES", "build_modules"]

SHAPES = ("sd15", "sdxl")
METHODS = ("sds", "vsd", "bsd")
# SDXL fp32 VSD needs the UNet twice in fp32 (about 21 GB) on a 24 GB machine: not run here
SKIP = {("sdxl", "fp32", "vsd"): "memory: the fp32 UNet twice (prior + VSD's copy) is about 21 GB"}


def _clip_tokenizer(folder: Path):
    """A byte-level CLIP tokenizer over single characters, padded to 77 tokens like the real ones (the real
    vocabulary cannot be downloaded; token ids only index the encoder's 49408-row embedding)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz,!":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def build_modules(shape: str, quick: bool, folder: Path) -> dict[str, Any]:
    """Randomly initialised pipeline components of `shape` (sd15 or sdxl) at full size (quick: 1/10 width)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def clip(hidden: int, layers: int, heads: int, projection: int = 0, act: str = "quick_gelu"):
        cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=4 * hidden,
                             num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
                             hidden_act=act, projection_dim=projection or hidden, bos_token_id=0, eos_token_id=1,
                             pad_token_id=1)
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)

    w = (lambda c: max(32, c // 10 // 32 * 32)) if quick else (lambda c: c)
    vae_channels = tuple(w(c) for c in (128, 256, 512, 512))
    sample = 16 if quick else 64
    vae = AutoencoderKL(block_out_channels=vae_channels, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=sample * 8, scaling_factor=0.18215 if shape == "sd15" else 0.13025,
                        force_upcast=shape == "sdxl")
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    te1 = clip(w(768), 2 if quick else 12, 4 if quick else 12)
    if shape == "sd15":
        unet = UNet2DConditionModel(sample_size=sample, cross_attention_dim=w(768),
                                    block_out_channels=tuple(w(c) for c in (320, 640, 1280, 1280)),
                                    attention_head_dim=4 if quick else 8)
        return {"unet": unet, "vae": vae, "text_encoder": te1, "tokenizer": _clip_tokenizer(folder), "scheduler": sched}
    te2 = clip(w(1280), 2 if quick else 32, 4 if quick else 20, projection=w(1280), act="gelu")
    time_dim = 32 if quick else 256
    unet = UNet2DConditionModel(
        sample_size=sample, block_out_channels=tuple(w(c) for c in (320, 640, 1280)),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(1, 2, 4) if quick else (5, 10, 20), transformer_layers_per_block=(1, 2, 2 if quick else 10),
        use_linear_projection=True, cross_attention_dim=w(768) + w(1280), addition_embed_type="text_time",
        addition_time_embed_dim=time_dim, projection_class_embeddings_input_dim=6 * time_dim + w(1280))
    return {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2, "tokenizer": _clip_tokenizer(folder),
            "tokenizer_2": _clip_tokenizer(folder), "scheduler": sched}


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _guidance(method: str, prior):
    from ..generation.config import load_generate_config
    from ..guidance.bsd import BSD
    from ..guidance.sds import SDS
    from ..guidance.vsd import VSD

    return {"sds": SDS, "vsd": VSD, "bsd": BSD}[method](prior, load_generate_config(method, None, []).guidance)


def measure_step(shape: str, dtype: str, method: str, quick: bool, timed: int) -> dict[str, Any]:
    """One (shape, dtype, method) row, measured in this process (see the module docstring)."""
    import statistics
    import time

    import torch

    from ..guidance.diffusers_prior import DiffusersPrior
    from ..guidance.pipeline_files import parse_dtype
    from ..guidance.prior import CameraCondition
    from ..guidance.prompts import ViewPrompts

    torch.manual_seed(0)
    precision = parse_dtype(dtype)
    t0 = time.perf_counter()
    torch.set_default_dtype(precision if precision == torch.bfloat16 else torch.float32)  # build in place
    with tempfile.TemporaryDirectory() as tmp:
        modules = build_modules(shape, quick, Path(tmp))
    torch.set_default_dtype(torch.float32)
    prior = DiffusersPrior.from_modules(modules, "cpu", precision, name=shape)
    params = sum(p.numel() for k in ("unet", "text_encoder", "text_encoder_2", "vae") if k in modules
                 for p in modules[k].parameters())
    guide = _guidance(method, prior)
    build_s = time.perf_counter() - t0
    cam = CameraCondition(torch.tensor([15.0]), torch.tensor([30.0]), torch.tensor([3.5]))
    emb = ViewPrompts(prior, "a red mug").for_cameras(cam)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(1 + timed):
        images = torch.rand(1, 3, prior.image_size, prior.image_size, generator=gen, requires_grad=True)
        t1 = time.perf_counter()
        loss, _ = guide.loss(images, emb, cam, 0.5, gen)
        loss.backward()
        times.append(time.perf_counter() - t1)
    return {"shape": shape, "dtype": dtype, "method": method, "image_px": prior.image_size,
            "latent_px": prior.sample_size, "params_m": round(params / 1e6, 1), "build_s": round(build_s, 1),
            "first_step_s": round(times[0], 2), "step_s": round(statistics.median(times[1:]), 2),
            "peak_mb": round(_peak_mb())}


def measure_gradient_agreement(quick: bool) -> dict[str, Any]:
    """Relative L2 distance of the SDS gradient (w.r.t. the same fp32 latents, t in {200, 500, 800}, the SDS
    config's CFG scale) of fp16 and bf16 copies of one SD-1.5-shaped prior from the fp32 gradient."""
    import copy

    import torch

    from ..guidance.diffusers_prior import DiffusersPrior
    from ..guidance.prior import CameraCondition
    from ..guidance.prompts import ViewPrompts

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        modules = build_modules("sd15", quick, Path(tmp))
    cam = CameraCondition(torch.tensor([15.0]), torch.tensor([30.0]), torch.tensor([3.5]))
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(1, 3, 128 if quick else 512, 128 if quick else 512, generator=gen)
    noise = [torch.randn(1, 4, 16 if quick else 64, 16 if quick else 64, generator=gen) for _ in range(3)]
    grads, z = {}, None
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        # .to() converts a module in place: the fp32 and fp16 priors get copies, bf16 the originals
        prior = DiffusersPrior.from_modules(copy.deepcopy(modules) if name != "bf16" else modules, "cpu", dtype)
        sds = _guidance("sds", prior)
        emb = ViewPrompts(prior, "a red mug").for_cameras(cam)
        with torch.no_grad():
            z = prior.encode(images).float() if z is None else z  # the fp32 latents, for every dtype
            grads[name] = torch.cat([sds.gradient(z, prior.add_noise(z, n, torch.tensor([t])), n, torch.tensor([t]),
                                                  emb, cam) for n, t in zip(noise, (200, 500, 800), strict=True)])
        del prior, sds
    ref = grads["fp32"].float()
    return {f"sd15_sds_grad_rel_err_{k}": round(float((grads[k].float() - ref).norm() / ref.norm()), 5)
            for k in ("fp16", "bf16")}


def _in_subprocess(call: str) -> dict[str, Any]:
    """Run `vision3d_kd.bench.prior_cost.<call>` in a fresh Python (its own peak memory); its JSON result."""
    code = f"import json; from vision3d_kd.bench import prior_cost as m; print(json.dumps(m.{call}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, shapes: list[str] | None = None, dtypes: list[str] | None = None,
        progress=print) -> dict[str, Any]:
    """Every (shape, dtype, method) row in its own process, then the gradient agreement; {rows, summary}."""
    rows: list[dict[str, Any]] = []
    timed = 1 if quick else 2
    for shape in shapes or list(SHAPES):
        for dtype in dtypes or ["fp32", "bf16"]:
            for method in METHODS:
                if (shape, dtype, method) in SKIP:
                    rows.append({"shape": shape, "dtype": dtype, "method": method, "error": SKIP[shape, dtype, method]})
                    continue
                row = _in_subprocess(f"measure_step({shape!r}, {dtype!r}, {method!r}, {quick}, {timed})")
                rows.append({"shape": shape, "dtype": dtype, "method": method, **row})
                progress(json.dumps(rows[-1]))
    summary: dict[str, Any] = {}
    for key, (shape, dtype, field) in {"sd15_sds_step_s_fp32": ("sd15", "fp32", "step_s"),
                                       "sd15_sds_step_s_bf16": ("sd15", "bf16", "step_s"),
                                       "sdxl_sds_step_s_bf16": ("sdxl", "bf16", "step_s"),
                                       "sd15_peak_mb": ("sd15", "fp32", "peak_mb")}.items():
        hit = [r for r in rows if (r["shape"], r["dtype"], r["method"]) == (shape, dtype, "sds") and field in r]
        summary[key] = hit[0][field] if hit else None
    summary.update(_in_subprocess(f"measure_gradient_agreement({quick})"))
    summary.update(timed_steps=timed, quick=quick, torch_threads=__import__("torch").get_num_threads())
    return {"rows": rows, "summary": summary}
