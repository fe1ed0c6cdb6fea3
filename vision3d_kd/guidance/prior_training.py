"""Training of the bundled prior (`tools/train_prior.py`): stage 1 an AutoencoderKL on the rendered
images (L1 + L2 reconstruction, a small KL term), stage 2 the latent UNet and the text encoder jointly
with the DDPM ε-loss (captions dropped to "" 10 % of the time for classifier-free guidance; the camera is
always given), optionally weighted up by `part_weight` on the latent cells that cover a view-asymmetric
part (mug handle, door, nose...: thin parts carry little of a plain MSE and are learnt last). Both stages
checkpoint to a work folder every `checkpoint_every` steps and resume from it; the UNet and text encoder
are exported from an exponential moving average of their weights."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.objects import COLOURS
from ..errors import ConfigError
from ..parallel import DistEnv, all_reduce_gradients, barrier, shard_range
from ..train.driver import seeded_init
from .bundled import SIZES, build_scheduler, build_text_encoder, build_tokenizer, build_unet, build_vae, save_pipeline
from .prior import CameraCondition, camera_features

__all__ = ["PriorTrainConfig", "train_prior", "export_checkpoint", "images_to_tensor"]

Log = Callable[[str, int, dict], None]


@dataclass
class PriorTrainConfig:
    """Sizes, steps and learning rates of both stages (batch / vae_batch in images; lr peak after 100
    warm-up steps, cosine decay to 10 %)."""

    size: str = "full"
    batch: int = 32
    vae_batch: int = 16
    vae_steps: int = 2000
    vae_lr: float = 5e-4
    kl_weight: float = 1e-6
    unet_steps: int = 6000
    unet_lr: float = 2e-4
    cond_drop: float = 0.1
    part_weight: float = 0.0  # ε-loss weight 1 + part_weight on latent cells covering an asymmetric part
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 50
    init_from: str = ""  # fine-tune: a pipeline directory whose VAE (kept as is, with its latent scale), UNet and
    #                      text encoder start the training; words new to the vocabulary get fresh embeddings

    def validate(self) -> None:
        if self.size not in SIZES:
            raise ConfigError(f"--size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if min(self.batch, self.vae_batch, self.checkpoint_every, self.log_every) < 1:
            raise ConfigError("batch, vae_batch, checkpoint_every and log_every must be >= 1")
        if min(self.vae_steps, self.unet_steps) < 0:
            raise ConfigError("vae_steps and unet_steps must be >= 0")
        if self.part_weight < 0:
            raise ConfigError("part_weight must be >= 0")
        if not (0 <= self.cond_drop < 1 and 0 <= self.ema_decay < 1):
            raise ConfigError("cond_drop and ema_decay must be in [0, 1)")
        if self.init_from and self.vae_steps:
            raise ConfigError("the VAE comes from --init-from as it is; use --vae-steps 0")
        if self.init_from and not (Path(self.init_from) / "model_index.json").is_file():
            raise ConfigError(f"--init-from {self.init_from}: not a diffusers pipeline directory (no model_index.json)")


def images_to_tensor(images: np.ndarray) -> Tensor:
    """uint8 [N,H,W,3] -> float [N,3,H,W] in [-1, 1]."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _lr(step: int, total: int, peak: float) -> float:
    warm = min(1.0, (step + 1) / 100)
    return peak * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> dict | None:
    return torch.load(path, weights_only=True) if path.is_file() else None


def _pipeline_vae(path: Path):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(path / "vae").float().eval().requires_grad_(False)


def _pipeline_denoiser(path: Path, size_name: str, tokenizer):
    """(UNet, text encoder) of the pipeline at `path` in float32, the text encoder's token embeddings moved to
    `tokenizer`'s ids: a word the pipeline knew keeps its row, a new word starts at the mean of the rows of
    the world's colour words (new words are colours so far) or, without those, of all rows."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, PreTrainedTokenizerFast

    unet = UNet2DConditionModel.from_pretrained(path / "unet").float()
    old_text = CLIPTextModel.from_pretrained(path / "text_encoder").float()
    old_vocab = PreTrainedTokenizerFast.from_pretrained(path / "tokenizer").get_vocab()
    text = build_text_encoder(SIZES[size_name])
    state = {k: v for k, v in old_text.state_dict().items() if "token_embedding" not in k}
    try:
        missing, unexpected = text.load_state_dict(state, strict=False)
    except RuntimeError:
        missing, unexpected = [], ["(shapes)"]
    if unexpected or [k for k in missing if "token_embedding" not in k]:
        raise ConfigError(f"--init-from {path}: its text encoder does not match --size {size_name}")
    old = old_text.get_input_embeddings().weight.detach()
    colours = [old_vocab[w] for w in COLOURS if w in old_vocab]
    fresh = old[colours].mean(0) if colours else old.mean(0)
    rows = text.get_input_embeddings().weight
    with torch.no_grad():
        for word, i in tokenizer.get_vocab().items():
            rows[i] = old[old_vocab[word]] if word in old_vocab else fresh
    return unet, text


def _step(opt: torch.optim.Optimizer, loss: Tensor, params: list, dist: DistEnv, clip: float | None = None) -> None:
    """Backward, gradients summed over the ranks (data-parallel), optional norm clipping, optimizer step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if dist.distributed:
        all_reduce_gradients(params)
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def _train_vae(images: np.ndarray, cfg: PriorTrainConfig, work: Path, log: Log, dist: DistEnv):
    if cfg.init_from:
        return _pipeline_vae(Path(cfg.init_from))
    vae = build_vae(SIZES[cfg.size], images.shape[1])
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    step = 0
    if (ck := _load(work / "vae.pt")) is not None:
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step = int(ck["step"])
    vae.train()
    t0 = time.perf_counter()
    while step < cfg.vae_steps:
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.vae_steps, cfg.vae_lr)
        pick = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen)
        lo, hi = shard_range(cfg.vae_batch, dist)  # the whole batch's draws on every rank, then this rank's share
        x = images_to_tensor(images[pick[lo:hi].numpy()])
        post = vae.encode(x).latent_dist
        eps = torch.randn((cfg.vae_batch, *post.mean.shape[1:]), generator=gen)[lo:hi]
        rec = vae.decode(post.mean + post.std * eps).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.kl_weight * kl
        _step(opt, loss * ((hi - lo) / cfg.vae_batch), list(vae.parameters()), dist)
        step += 1
        if dist.writer and (step % cfg.log_every == 0 or step == cfg.vae_steps):
            log("vae", step, {"loss": loss.item(), "kl": kl.item(), "seconds": time.perf_counter() - t0})
        if dist.writer and (step % cfg.checkpoint_every == 0 or step == cfg.vae_steps):
            _save(work / "vae.pt", {"model": vae.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                                    "step": step})
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def _encode_all(vae, images: np.ndarray, work: Path, chunk: int = 256, keep_scale: bool = False,
                dist: DistEnv | None = None) -> Tensor:
    """Posterior means of every image times the scaling factor 1/std (set in the VAE's config; with
    `keep_scale` the VAE's own, as a fine-tuned UNet was trained with it), cached (data-parallel: rank 0
    encodes and writes, the others read it)."""
    path = work / "latents.pt"
    dist = dist or DistEnv()
    if not dist.writer:
        barrier()
    if (ck := _load(path)) is not None and ck["n"] == len(images):
        if dist.writer:
            barrier()
        vae.register_to_config(scaling_factor=float(ck["scale"]))
        return ck["latents"]
    lat = torch.cat([vae.encode(images_to_tensor(images[s: s + chunk])).latent_dist.mean
                     for s in range(0, len(images), chunk)])
    scale = float(vae.config.scaling_factor) if keep_scale else float(1.0 / lat.std())
    vae.register_to_config(scaling_factor=scale)
    lat = lat * scale
    _save(path, {"latents": lat, "scale": scale, "n": len(images)})
    barrier()
    return lat


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)


def _latent_weights(part_masks: np.ndarray | None, latent_size: int, part_weight: float) -> Tensor | None:
    """Per-image ε-loss weights [N,1,h,w] at latent resolution: 1 + part_weight where any pixel of the
    latent cell shows the asymmetric part (max-pooled mask); None without masks or weight."""
    if part_masks is None or part_weight == 0:
        return None
    m = torch.from_numpy(np.asarray(part_masks, dtype=np.uint8))[:, None].float()
    m = F.max_pool2d(m, m.shape[-1] // latent_size)
    return (1.0 + part_weight * m).to(torch.float16)


def _train_unet(latents: Tensor, meta: list[dict], cfg: PriorTrainConfig, work: Path, tokenizer, log: Log,
                part_masks: np.ndarray | None = None, dist: DistEnv | None = None):
    size, dist = SIZES[cfg.size], dist or DistEnv()
    if cfg.init_from:
        unet, text = _pipeline_denoiser(Path(cfg.init_from), cfg.size, tokenizer)
    else:
        unet, text = build_unet(size, latents.shape[-1]), build_text_encoder(size)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text).requires_grad_(False)
    opt = torch.optim.AdamW([*unet.parameters(), *text.parameters()], lr=cfg.unet_lr, weight_decay=1e-2)
    sched = build_scheduler()
    abar = sched.alphas_cumprod.float()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    step = 0
    if (ck := _load(work / "unet.pt")) is not None:
        for m, k in ((unet, "unet"), (text, "text"), (ema_unet, "ema_unet"), (ema_text, "ema_text"), (opt, "opt")):
            m.load_state_dict(ck[k])
        gen.set_state(ck["gen"])
        step = int(ck["step"])
    ids = tokenizer([m["caption"] for m in meta], padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids
    cams = camera_features(CameraCondition(*(torch.tensor([m[k] for m in meta])
                                             for k in ("elevation_deg", "azimuth_deg", "radius"))))
    weights = _latent_weights(part_masks, latents.shape[-1], cfg.part_weight)
    unet.train()
    text.train()
    t0 = time.perf_counter()
    while step < cfg.unet_steps:
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.unet_steps, cfg.unet_lr)
        # the whole batch's draws on every rank (the same as one process), then this rank's contiguous share
        idx = torch.randint(0, len(latents), (cfg.batch,), generator=gen)
        tok = ids[idx].clone()
        drop = torch.rand(cfg.batch, generator=gen) < cfg.cond_drop
        tok[drop] = empty[0]
        t = torch.randint(0, len(abar), (cfg.batch,), generator=gen)
        noise = torch.randn(latents[idx].shape, generator=gen)
        w = None if weights is None else weights[idx].float()
        norm = noise.numel() * (1.0 if w is None else float(w.mean()))  # the whole batch's mean, on every rank
        lo, hi = shard_range(cfg.batch, dist)
        idx, tok, t, noise = idx[lo:hi], tok[lo:hi], t[lo:hi], noise[lo:hi]
        a = abar[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * latents[idx] + (1 - a).sqrt() * noise
        pred = unet(x_t, t, text(tok)[0], class_labels=cams[idx]).sample
        err = (pred - noise) ** 2
        loss = (err if w is None else err * w[lo:hi]).sum() / norm
        _step(opt, loss, [*unet.parameters(), *text.parameters()], dist, clip=1.0)
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text, decay)
        step += 1
        if dist.writer and (step % cfg.log_every == 0 or step == cfg.unet_steps):
            log("unet", step, {"loss": loss.item() * dist.world_size, "seconds": time.perf_counter() - t0})
        if dist.writer and (step % cfg.checkpoint_every == 0 or step == cfg.unet_steps):
            _save(work / "unet.pt", {"unet": unet.state_dict(), "text": text.state_dict(),
                                     "ema_unet": ema_unet.state_dict(), "ema_text": ema_text.state_dict(),
                                     "opt": opt.state_dict(), "gen": gen.get_state(), "step": step})
    return ema_unet.eval(), ema_text.eval(), sched


def train_prior(images: np.ndarray, meta: list[dict], work: Path, out: Path, cfg: PriorTrainConfig,
                log: Log | None = None, part_masks: np.ndarray | None = None, dist: DistEnv | None = None) -> Path:
    """Train (or resume) both stages on images uint8 [N,H,W,3] with metadata records (caption,
    elevation_deg, azimuth_deg, radius) and write the pipeline directory `out`. part_masks uint8
    [N,H,W] (load_part_masks) are needed when cfg.part_weight > 0. `dist` (under torchrun): data-parallel —
    every rank draws the whole batch, computes its share, gradients are summed; rank 0 alone writes."""
    dist = dist or DistEnv()
    cfg.validate()
    if len(images) != len(meta) or len(images) == 0:
        raise ConfigError(f"{len(images)} images but {len(meta)} metadata records")
    if cfg.part_weight > 0 and (part_masks is None or len(part_masks) != len(images)):
        raise ConfigError("part_weight > 0 needs one part mask per image (data/object_views.load_part_masks)")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        changed = [k for k in ("size", "batch", "seed", "init_from") if old.get(k, "") != asdict(cfg)[k]]
        if changed:
            raise ConfigError(f"{work}: was started with other {', '.join(changed)}; use a new work folder")
    barrier()  # every rank has compared the settings before rank 0 writes them
    if dist.writer:
        cfg_path.write_text(json.dumps(asdict(cfg), indent=1))
    log = log or (lambda stage, step, rec: None)
    with seeded_init(cfg.seed):  # its draws use the global RNG: scoped, so the caller's stays as it was
        vae = _train_vae(images, cfg, work, log, dist)
        latents = _encode_all(vae, images, work, keep_scale=bool(cfg.init_from), dist=dist)
        tokenizer = build_tokenizer(SIZES[cfg.size].max_words)
        unet, text, sched = _train_unet(latents, meta, cfg, work, tokenizer, log, part_masks, dist)
    return save_pipeline(out, unet, text, tokenizer, sched, vae) if dist.writer else Path(out)


def export_checkpoint(work: Path, out: Path) -> tuple[Path, int]:
    """Write the pipeline directory `out` from a work folder's latest checkpoints (VAE, latent scale, EMA
    UNet and text encoder), e.g. while training still runs; returns (out, UNet step)."""
    work = Path(work)
    cfg_path = work / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{work}: no config.json (not a train_prior work folder)")
    saved = json.loads(cfg_path.read_text())
    size, init_from = SIZES[saved["size"]], saved.get("init_from", "")
    ck_vae, ck_lat, ck_unet = (_load(work / n) for n in ("vae.pt", "latents.pt", "unet.pt"))
    if (ck_vae is None and not init_from) or ck_lat is None or ck_unet is None:
        raise ConfigError(f"{work}: needs vae.pt, latents.pt and unet.pt (the UNet stage has not checkpointed yet)")
    if init_from:  # fine-tuned: the VAE is the starting pipeline's
        vae = _pipeline_vae(Path(init_from))
    else:
        vae = build_vae(size)
        vae.load_state_dict(ck_vae["model"])
    vae.register_to_config(scaling_factor=float(ck_lat["scale"]))
    unet, text = build_unet(size, ck_lat["latents"].shape[-1]), build_text_encoder(size)
    unet.load_state_dict(ck_unet["ema_unet"])
    text.load_state_dict(ck_unet["ema_text"])
    tokenizer = build_tokenizer(size.max_words)
    out = save_pipeline(out, unet.eval(), text.eval(), tokenizer, build_scheduler(), vae.eval())
    return out, int(ck_unet["step"])
