"""GSV3D's geometric distillation: LoRA (peft) on the multi-view generator's UNet attention, trained through
the frozen Gaussian decoder and the package's rasterizer so that what the generator predicts is consistent
in 3D.

One step: an object's ring latents are noised at a uniform timestep t; the generator (with LoRA) predicts ε̂
and so x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t for all ring frames together; the frozen decoder turns x̂₀ into
Gaussians, which are rendered at some ring views and at novel views off the ring and compared with the truth
(RGB, mask, depth: `orbit_set.render_loss`), weighted by ᾱ_t (`render_weight` "alpha": x̂₀ is noise-dominated
early in the chain, and 1/√ᾱ_t would blow its gradient up) or by √ᾱ_t ("sqrt-alpha": the gradient reaching ε̂
is then at most √(1−ᾱ_t), bounded at every t, so the noisy states that decide an object's shape count too); the
generator's own ε-loss is kept beside it so it still samples well.
The paper does not say which timesteps, views or weights it uses; these are ours (README).

On policy (`on_policy` > 0, with a sample set of the generator's own chains, `sample_set.py`): with that
probability a step's render term is taken instead at a state x_t the generator itself reached while sampling a
set object's ring (not the truth noised), its x̂₀ guided as sampling guides it, so the LoRA learns to pull the
generator's own inconsistent intermediate rings toward the true object. `samples_from` / `samples_to` pick the
set's objects: a decoder taught a set's generated rings renders them almost as well as true latents (bench/TUNING.md,
twenty-second session), so a LoRA learning through it should take its states from objects outside that part."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ...checkpoint import load_tensors, save_tensors, write_json
from ...errors import ConfigError, RunError
from ...train.driver import LoopConfig, StepResult, train
from .decoder import GaussianDecoder
from .generator import MultiViewGenerator
from .orbit_set import OrbitSet, view_losses
from .train import ModelTask, RenderSupervision, SampleObjects, check_fresh, load_modules

__all__ = ["LoraTrainConfig", "add_lora", "load_lora", "train_lora", "export_lora", "default_lora_path"]

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
RENDER_WEIGHTS = ("alpha", "sqrt-alpha")


@dataclass
class LoraTrainConfig(RenderSupervision, SampleObjects):
    """Geometric distillation: LoRA rank and the weights of the render and diffusion terms."""

    steps: int = 1500
    batch: int = 1
    rank: int = 8
    w_render: float = 1.0
    w_diffusion: float = 1.0
    on_policy: float = 0.0
    guidance: float = 4.0
    render_weight: str = "alpha"
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"render_weight": RENDER_WEIGHTS}

    def check(self) -> None:
        """ConfigError for a render weighting that is not one of RENDER_WEIGHTS."""
        if self.render_weight not in RENDER_WEIGHTS:
            raise ConfigError(f"--render-weight must be one of {', '.join(RENDER_WEIGHTS)}, got {self.render_weight!r}")


def add_lora(generator: MultiViewGenerator, rank: int) -> None:
    """Give the generator's UNet LoRA adapters (rank `rank`, alpha = rank) on every attention projection;
    only they train."""
    from peft import LoraConfig

    generator.unet.requires_grad_(False)
    generator.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, init_lora_weights=True))


def default_lora_path() -> Path:
    """The bundled LoRA's directory (package data)."""
    return Path(__file__).resolve().parents[2] / "assets" / "gsv3d_lora"


def load_lora(generator: MultiViewGenerator, path: str | Path | None = None) -> MultiViewGenerator:
    """Add the LoRA saved at `path` (default: the bundled one) to `generator`; returns it."""
    from peft import set_peft_model_state_dict

    path = Path(path) if path else default_lora_path()
    if not (path / "lora.json").is_file():
        raise RunError(f"{path}: not a GSV3D LoRA directory (no lora.json)")
    info = json.loads((path / "lora.json").read_text())
    add_lora(generator, int(info["rank"]))
    set_peft_model_state_dict(generator.unet, load_tensors(path / "lora.safetensors"))
    return generator


class LoraTask(ModelTask):
    """One geometric-distillation step (module docstring)."""

    def __init__(self, cfg: LoraTrainConfig, data: OrbitSet, generator: MultiViewGenerator, decoder: GaussianDecoder,
                 info: dict, chains: tuple[torch.Tensor, list[int], int] | None = None) -> None:
        """`chains`: (the sample set's rings and states [M,1+T,V,4,h,w] of orbit-set objects first … first + M − 1,
        their timesteps [T], first)."""
        self.g, self.decoder, self.data = generator, decoder.requires_grad_(False).eval(), data
        self.chains = chains
        generator.encoder.requires_grad_(False)  # only the LoRA trains
        params = [p for p in generator.unet.parameters() if p.requires_grad]
        super().__init__("gsv3d-lora", cfg, {"unet": generator.unet}, params, info)

    def step(self, step: int, progress: float) -> StepResult:
        cfg, g, d = self.cfg, self.g, self.data
        ids = torch.randint(d.n, (cfg.batch,), generator=self.gen).tolist()
        x0 = d.latents[ids]
        t = torch.randint(len(g.alphas_cumprod), (cfg.batch,), generator=self.gen)
        noise = torch.randn(x0.shape, generator=self.gen)
        a = g.alphas_cumprod[t]
        x_t = a.sqrt().reshape(-1, 1, 1, 1, 1) * x0 + (1 - a).sqrt().reshape(-1, 1, 1, 1, 1) * noise
        images = d.inputs(ids)
        cams = g.cameras(d.elevation[ids, 0], d.azimuth[ids, : d.ring])
        eps = g.predict_noise(x_t, t, x0[:, 0], g.encoder(images), cams)
        diffusion = F.mse_loss(eps, noise)
        x0_hat = g.x0_from_noise(x_t, eps, t)
        if self.chains is not None and float(torch.rand((), generator=self.gen)) < cfg.on_policy:
            ids, t, x0_hat = self._own_state(cfg.batch)
            a, images = g.alphas_cumprod[t], d.inputs(ids)
        ring = torch.arange(d.ring).expand(cfg.batch, d.ring)
        splats = self.decoder(x0_hat, d.cameras(ids, ring), images)
        losses, terms = view_losses(splats, d, ids, cfg, self.gen)
        weight = a if cfg.render_weight == "alpha" else a.sqrt()
        rendered = sum(weight[j] * loss_j for j, loss_j in enumerate(losses)) / cfg.batch
        loss = cfg.w_diffusion * diffusion + cfg.w_render * rendered
        self.apply(loss, step)
        self.last = {"loss": float(loss.detach()), "diffusion": float(diffusion.detach()), **terms}
        return StepResult(dict(self.last), f"loss {self.last['loss']:.4f} rgb {terms['rgb']:.4f}")

    def _own_state(self, batch: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """(object ids [B], timesteps [B], guided x̂₀ [B,V,4,h,w]) at states x_t of the sample set's chains."""
        states, state_t, first = self.chains
        g, d = self.g, self.data
        rows = torch.randint(len(states), (batch,), generator=self.gen).tolist()
        k = torch.randint(len(state_t), (batch,), generator=self.gen)
        x_t = torch.stack([states[i, 1 + int(k[j])] for j, i in enumerate(rows)])
        ids = [first + i for i in rows]
        t = torch.tensor([state_t[int(j)] for j in k])
        cams = g.cameras(d.elevation[ids, 0], d.azimuth[ids, : d.ring])
        eps = g.guided_noise(x_t, t, d.latents[ids][:, 0], g.encoder(d.inputs(ids)), cams, self.cfg.guidance)
        return ids, t, g.x0_from_noise(x_t, eps, t)


def train_lora(data: Path, out: Path, cfg: LoraTrainConfig, generator: MultiViewGenerator, decoder: GaussianDecoder,
               names: dict[str, str], resume: bool = False, show_progress: bool = True,
               samples: Path | None = None) -> dict[str, Any]:
    """Geometric distillation of `generator` (LoRA added here) through `decoder` on the orbit set `data`, on
    policy at rate `cfg.on_policy` with the sample set `samples` (made by `generator`; its objects in
    `cfg.sample_range`); `names` records which generator and decoder (RUN/config.json). RUN `out`."""
    check_fresh(out, resume)
    cfg.check()
    if (samples is None) != (cfg.on_policy == 0):
        raise ConfigError("a sample set and --on-policy > 0 go together")
    cfg.check_samples(samples)
    orbits = OrbitSet(data, generator)
    chains = None
    if samples is not None:
        states, info, first = cfg.load_samples(samples, generator, orbits)
        if not info["state_t"]:
            raise ConfigError(f"{samples}: kept no chain states (sampled with fewer than 4 steps)")
        chains = (states, [int(t) for t in info["state_t"]], first)
    add_lora(generator, cfg.rank)
    task = LoraTask(cfg, orbits, generator, decoder, {"data": str(data), **names, "objects": orbits.n,
                                                      "samples": str(samples) if samples else None}, chains)
    return train(task, out, LoopConfig.of(cfg), resume=resume, show_progress=show_progress)


def export_lora(run: Path, generator: MultiViewGenerator, out: Path, info: dict | None = None) -> Path:
    """Write the LoRA of a geometric-distillation RUN (for `generator`, which gets the adapters) to `out`."""
    from peft import get_peft_model_state_dict

    saved = json.loads((Path(run) / "config.json").read_text())
    add_lora(generator, int(saved["settings"]["rank"]))
    load_modules(run, {"unet": generator.unet})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lora = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(generator.unet).items()}
    save_tensors(out / "lora.safetensors", lora)
    write_json(out / "lora.json", {"rank": int(saved["settings"]["rank"]), "targets": TARGETS, **(info or {})})
    return out
