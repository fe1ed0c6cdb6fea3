"""Training the bundled GSV3D models on an orbit set, each a `TrainTask` of the one training driver (resumable,
logged, budgeted): the multi-view generator (ε-loss on ring latents, input-view conditioning dropped 10 % of
the time for guidance, EMA weights exported) and the Gaussian decoder (renders of its Gaussians against the
true ring and novel views: RGB, mask and depth)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...checkpoint import load_tensors, save_tensors, write_json
from ...errors import ConfigError, DataError, NumericalError, RunError
from ...train.driver import LoopConfig, StepResult, TrainTask, make_generator, seeded_init, train
from ...train.state import load_train_state, save_train_state
from .decoder import DecoderConfig, GaussianDecoder, load_decoder
from .generator import MultiViewGenerator, generator_from_prior, load_generator
from .orbit_set import OrbitSet, view_losses
from .sample_set import load_sample_set

__all__ = ["TrainSettings", "RenderSupervision", "SampleObjects", "GeneratorTrainConfig", "DecoderTrainConfig",
           "ModelTask", "train_generator", "train_decoder", "export_generator", "export_decoder", "lr_at",
           "check_fresh", "load_modules", "orbit_image_size"]


@dataclass
class TrainSettings:
    """What every GSV3D trainer takes: steps, objects per step, peak learning rate, seed, logging, budget."""

    steps: int = 3000
    batch: int = 2
    lr: float = 1e-4
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 250
    max_seconds: float = 0.0


@dataclass
class GeneratorTrainConfig(TrainSettings):
    """Generator fine-tuning from the bundled prior: input-view conditioning dropped with probability
    `cond_drop` (for guidance), EMA decay of the exported weights."""

    cond_drop: float = 0.1
    ema_decay: float = 0.999


@dataclass
class RenderSupervision(TrainSettings):
    """Trainers that render Gaussians against the truth: ring and novel views per object, loss weights."""

    ring_views: int = 3
    novel_views: int = 4
    w_mask: float = 1.0
    w_depth: float = 0.5


@dataclass
class SampleObjects:
    """Which objects of a sample set a trainer takes its generated rings from: the set's objects (= orbit-set
    objects) `samples_from` ≤ i < `samples_to` (0: to the set's end) — so that, say, a LoRA learns on objects
    whose generated rings the decoder it trains through was never taught."""

    samples_from: int = dataclasses.field(default=0, metadata={"help": "take the sample set's objects from this "
                                                                      "index on (default 0)"})
    samples_to: int = dataclasses.field(default=0, metadata={"help": "and up to, not including, this index (default 0: "
                                                                    "the set's end)"})

    def check_samples(self, samples: Path | None) -> None:
        """ConfigError for a range of sample-set objects without a sample set."""
        if samples is None and (self.samples_from or self.samples_to):
            raise ConfigError("--samples-from / --samples-to pick objects of a sample set: give --samples")

    def sample_range(self, n: int) -> tuple[int, int]:
        """(first, end) of the objects taken from a set of `n`; ConfigError for an empty or out-of-set range."""
        end = self.samples_to or n
        if not 0 <= self.samples_from < end <= n:
            raise ConfigError(f"--samples-from {self.samples_from} / --samples-to {self.samples_to}: not a range of "
                              f"objects of a sample set of {n}")
        return self.samples_from, end

    def load_samples(self, samples: Path, generator: MultiViewGenerator, orbits: OrbitSet
                     ) -> tuple[torch.Tensor, dict, int]:
        """(the set's rings and states [M,1+T,V,4,h,w] of orbit-set objects first … first + M − 1, its info,
        first) for the objects in `sample_range`; only those need to be sampled yet (`load_sample_set`'s upto)."""
        states, info = load_sample_set(samples, generator, orbits, self.samples_to or None)
        first, end = self.sample_range(len(states))
        return states[first:end], info, first


@dataclass
class DecoderTrainConfig(RenderSupervision, SampleObjects):
    """Decoder training; latent noise (std, drawn per object up to `latent_noise`) so it tolerates a
    generator's latents; with a sample set, each object is with probability `generated` one of the set's (those
    in `sample_range`), decoded from the generator's own ring instead of its true latents; `keep_input`: the
    input view's frame (ring view 0) is always its true latent, noise-free, as `image-to-3d --keep-input`
    decodes it."""

    lr: float = 3e-4
    latent_noise: float = 0.1
    generated: float = 0.0
    keep_input: bool = False
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)


def lr_at(step: int, total: int, peak: float, warm: int = 100) -> float:
    """Linear warm-up over `warm` steps, then cosine decay to 10 % of `peak` at `total`."""
    ramp = min(1.0, (step + 1) / warm)
    return peak * ramp * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))


class ModelTask(TrainTask):
    """What the GSV3D trainers share: named modules saved as RUN/weights.safetensors, settings in
    RUN/config.json (a resume with other settings is refused), AdamW over `params` with `lr_at`, a guarded
    step (a non-finite loss stops training with the last checkpoint kept)."""

    def __init__(self, name: str, cfg: Any, modules: dict[str, torch.nn.Module], params: list, info: dict) -> None:
        self.name, self.cfg, self.modules, self.params = name, cfg, modules, params
        self.info = {"task": name, "settings": dataclasses.asdict(cfg), **info}
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        self.gen = make_generator(cfg.seed)
        self.last: dict[str, float] = {}

    def apply(self, loss: torch.Tensor, step: int) -> None:
        if not torch.isfinite(loss):
            raise NumericalError(f"{self.name}: loss is {float(loss)} at step {step}; lower --lr "
                                 "(last checkpoint kept)")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        for group in self.opt.param_groups:
            group["lr"] = lr_at(step, self.cfg.steps, self.cfg.lr)
        self.opt.step()

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"{m}.{k}": v.detach().contiguous() for m, mod in self.modules.items()
                for k, v in mod.state_dict().items()}

    def save(self, out: Path, meta: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "weights.safetensors", self.weights())
        write_json(out / "config.json", {**self.info, "steps_done": meta["step"]})
        save_train_state(out, self.opt, meta, self.gen)

    def restore(self, out: Path) -> dict[str, Any]:
        if not (out / "weights.safetensors").is_file():
            raise RunError(f"{out}: nothing to resume")
        saved = json.loads((out / "config.json").read_text())
        if _fixed(saved.get("settings", {})) != _fixed(self.info["settings"]):
            raise ConfigError(f"{out}: was trained with other settings; resume with the same options")
        load_modules(out, self.modules)
        meta, _ = load_train_state(out, self.opt, self.gen)
        return meta

    def finish(self, out: Path) -> dict[str, Any]:
        return {f"final_{k}": v for k, v in self.last.items()}


def _fixed(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a resume must keep (the step count, budget and logging may change)."""
    return {k: v for k, v in settings.items() if k not in ("steps", "max_seconds", "log_every", "checkpoint_every")}


def load_modules(run: Path, modules: dict[str, torch.nn.Module]) -> None:
    """Load RUN/weights.safetensors into `modules` (keys `<module name>.<parameter>`)."""
    tensors = load_tensors(Path(run) / "weights.safetensors")
    for m, mod in modules.items():
        mod.load_state_dict({k[len(m) + 1:]: v for k, v in tensors.items() if k.startswith(m + ".")})


class GeneratorTask(ModelTask):
    """One step: `batch` objects' ring latents noised at uniform timesteps, ε-MSE of the generator's
    prediction given the input view (dropped with probability cond_drop); EMA after each step."""

    def __init__(self, cfg: GeneratorTrainConfig, data: OrbitSet, model: MultiViewGenerator, info: dict) -> None:
        self.model, self.data = model, data
        self.ema = {"unet": copy.deepcopy(model.unet).requires_grad_(False),
                    "encoder": copy.deepcopy(model.encoder).requires_grad_(False)}
        params = list(model.unet.parameters()) + list(model.encoder.parameters())
        super().__init__("mv-generator", cfg, {"unet": model.unet, "encoder": model.encoder,
                                               "ema_unet": self.ema["unet"], "ema_encoder": self.ema["encoder"]},
                         params, info)
        model.unet.train()

    def step(self, step: int, progress: float) -> StepResult:
        cfg, m, d = self.cfg, self.model, self.data
        ids = torch.randint(d.n, (cfg.batch,), generator=self.gen).tolist()
        x0 = d.latents[ids]
        t = torch.randint(len(m.alphas_cumprod), (cfg.batch,), generator=self.gen)
        noise = torch.randn(x0.shape, generator=self.gen)
        a = m.alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        keep = (torch.rand(cfg.batch, generator=self.gen) >= cfg.cond_drop).float()
        cond = x0[:, 0] * keep.reshape(-1, 1, 1, 1)
        tokens = m.encoder(d.inputs(ids)) * keep.reshape(-1, 1, 1)
        cams = m.cameras(d.elevation[ids, 0], d.azimuth[ids, : d.ring])
        loss = F.mse_loss(m.predict_noise(x_t, t, cond, tokens, cams), noise)
        self.apply(loss, step)
        with torch.no_grad():
            for name, mod in (("unet", m.unet), ("encoder", m.encoder)):
                for e, p in zip(self.ema[name].parameters(), mod.parameters(), strict=True):
                    e.lerp_(p, 1.0 - cfg.ema_decay)
        self.last = {"loss": float(loss.detach())}
        return StepResult(dict(self.last), f"loss {self.last['loss']:.4f}")


class DecoderTask(ModelTask):
    """One step: `batch` objects' ring latents (plus noise) decoded to Gaussians, rendered at `ring_views`
    random ring views and `novel_views` novel views, `render_loss` against the truth."""

    def __init__(self, cfg: DecoderTrainConfig, data: OrbitSet, decoder: GaussianDecoder, info: dict,
                 samples: torch.Tensor | None = None, first: int = 0) -> None:
        """`samples` [M,V,4,h,w]: the generated rings of orbit-set objects first … first + M − 1."""
        self.decoder, self.data, self.samples, self.first = decoder, data, samples, first
        super().__init__("gs-decoder", cfg, {"decoder": decoder}, list(decoder.parameters()), info)
        decoder.train()

    def step(self, step: int, progress: float) -> StepResult:
        cfg, d = self.cfg, self.data
        ids = torch.randint(d.n, (cfg.batch,), generator=self.gen).tolist()
        lat = d.latents[ids]
        sigma = torch.rand(cfg.batch, 1, 1, 1, 1, generator=self.gen) * cfg.latent_noise
        lat = lat + sigma * torch.randn(lat.shape, generator=self.gen)
        if self.samples is not None:
            own = torch.rand(cfg.batch, generator=self.gen) < cfg.generated
            drawn = torch.randint(len(self.samples), (cfg.batch,), generator=self.gen)
            for j in torch.nonzero(own).flatten().tolist():
                ids[j] = self.first + int(drawn[j])
                lat[j] = self.samples[int(drawn[j])]
        if cfg.keep_input:
            lat[:, 0] = d.latents[ids, 0]
        ring = torch.arange(d.ring).expand(cfg.batch, d.ring)
        splats = self.decoder(lat, d.cameras(ids, ring), d.inputs(ids))
        losses, terms = view_losses(splats, d, ids, cfg, self.gen)
        loss = sum(losses) / cfg.batch
        self.apply(loss, step)
        self.last = {"loss": float(loss.detach()), **terms}
        return StepResult(dict(self.last), f"loss {self.last['loss']:.4f} rgb {terms['rgb']:.4f}")


def check_fresh(out: Path, resume: bool) -> None:
    if not resume and (Path(out) / "weights.safetensors").exists():
        raise ConfigError(f"{out}: already holds a run (use --resume to continue it, or a new --out)")


def orbit_image_size(data: Path) -> int:
    """Image size of an orbit set (its info.json)."""
    info = Path(data) / "info.json"
    if not info.is_file():
        raise DataError(f"{data}: no orbit set here (no info.json; make one with `python tools/train_gsv3d.py data`)")
    return int(json.loads(info.read_text())["size"])


def train_generator(data: Path, out: Path, cfg: GeneratorTrainConfig, prior: Path, resume: bool = False,
                    show_progress: bool = True, init: Path | None = None) -> dict[str, Any]:
    """Fine-tune a multi-view generator on the orbit set `data`, starting from the text prior at `prior` or,
    with `init`, from the generator saved there (training continued with a fresh optimiser); RUN `out`."""
    from ...data.object_orbits import ORBIT_RADIUS

    check_fresh(out, resume)
    size = orbit_image_size(data)
    with seeded_init(cfg.seed):
        model = generator_from_prior(prior, ORBIT_RADIUS, size) if init is None else load_generator(init)
    if model.size != size:
        raise ConfigError(f"{init}: a generator for {model.size}-px views; the orbit set {data} has {size} px")
    orbits = OrbitSet(data, model)
    task = GeneratorTask(cfg, orbits, model, {"data": str(data), "prior": str(prior), "objects": orbits.n,
                                              "image_size": orbits.size, "init": str(init) if init else None})
    return train(task, out, LoopConfig.of(cfg), resume=resume, show_progress=show_progress)


def train_decoder(data: Path, out: Path, cfg: DecoderTrainConfig, generator: MultiViewGenerator,
                  generator_name: str, resume: bool = False, show_progress: bool = True, init: Path | None = None,
                  samples: Path | None = None) -> dict[str, Any]:
    """Train a Gaussian decoder on the orbit set `data` (latents by `generator`'s VAE) — from scratch or, with
    `init`, on from the decoder saved there (deepened to `cfg.decoder.depth` blocks if that is more) — with,
    given `samples`, the generator's own rings of that set's objects (`sample_set`; sampled by `generator`)
    mixed in at rate `cfg.generated`; RUN `out`."""
    check_fresh(out, resume)
    if (samples is None) != (cfg.generated == 0):
        raise ConfigError("a sample set and --generated > 0 go together")
    cfg.check_samples(samples)
    with seeded_init(cfg.seed):
        decoder = GaussianDecoder(cfg.decoder) if init is None else load_decoder(init)
    if init is not None and decoder.config != cfg.decoder:
        if dataclasses.replace(cfg.decoder, depth=decoder.config.depth) != decoder.config or \
                cfg.decoder.depth < decoder.config.depth:
            raise ConfigError(f"{init}: a decoder of another architecture than the settings ask for (only more "
                              f"blocks can be added: --decoder-depth ≥ {decoder.config.depth})")
        decoder = decoder.deepened(cfg.decoder.depth)
    orbits = OrbitSet(data, generator)
    own, first = None, 0
    if samples is not None:
        states, _, first = cfg.load_samples(samples, generator, orbits)
        own = states[:, 0]  # the sampled rings
    info = {"data": str(data), "generator": generator_name, "objects": orbits.n,
            "init": str(init) if init else None, "samples": str(samples) if samples else None}
    task = DecoderTask(cfg, orbits, decoder, info, own, first)
    return train(task, out, LoopConfig.of(cfg), resume=resume, show_progress=show_progress)


def export_generator(run: Path, prior: Path, out: Path, info: dict | None = None) -> Path:
    """Write the EMA weights of a generator training RUN as a generator directory `out`."""
    from ...data.object_orbits import ORBIT_RADIUS

    saved = json.loads((Path(run) / "config.json").read_text())
    model = generator_from_prior(prior, ORBIT_RADIUS, int(saved["image_size"]))
    load_modules(run, {"ema_unet": model.unet, "ema_encoder": model.encoder})
    model.save(out, info)
    return Path(out)


def export_decoder(run: Path, out: Path, info: dict | None = None) -> Path:
    """Write the decoder of a decoder training RUN as a decoder directory `out`."""
    saved = json.loads((Path(run) / "config.json").read_text())
    decoder = GaussianDecoder(DecoderConfig(**saved["settings"]["decoder"]))
    load_modules(run, {"decoder": decoder})
    decoder.save(out, info)
    return Path(out)
