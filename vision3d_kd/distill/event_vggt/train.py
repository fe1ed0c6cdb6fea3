"""Training of EventVGGT networks: the RGB teacher on ground-truth depth, the event student on ground
truth (the upper bound) or distilled from a teacher with switchable STFD / CMFM / TCD.

The student never sees ground-truth depth in distillation mode: its targets are the teacher's depth
and tokens on the RGB frames aligned with its event windows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import ConfigError, NumericalError, RunError
from ...parallel import DistEnv, all_reduce_gradients, barrier, rank_generator, shard_range
from ...runs import update_metrics
from ...train.driver import StepResult, TrainTask, make_generator, seeded_init, train
from ...train.loop import LoopConfig
from ...train.state import load_train_state, save_train_state
from .clips import EventClips
from .losses import (
    TokenProjector,
    confidence_loss,
    depth_target,
    match_grid,
    mix_tokens,
    si_log_loss,
    stfd_loss,
    stfd_relation_loss,
    tcd_loss,
)
from .model import GeometryNet, NetConfig
from .teacher import GeometryTeacher, load_geometry_teacher, save_net

__all__ = ["DistillConfig", "EventDepthTask", "train_network", "distill_events", "changed_options"]

_RESUMABLE = ("steps", "log_every", "checkpoint_every")  # options a resumed run may change


def changed_options(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Names of the `distill` options (a run's saved section vs `asdict` of a config) that differ, the ones a
    resumed run may change aside; [] when a run made with `saved` can be resumed or reused under `now`."""
    a, b = json.loads(json.dumps(saved)), json.loads(json.dumps(now))
    return sorted(k for k in a.keys() | b.keys() if k not in _RESUMABLE and a.get(k) != b.get(k))


@dataclass
class DistillConfig:
    """input: "events" (student) or "rgb" (teacher); supervision: "teacher" (distillation) or "gt".
    stfd / cmfm / tcd switch the distillation terms (ignored with gt supervision). si_lambda: scale
    invariance of the depth loss (1 = fully invariant). stfd_taps: which of the four head layers are
    matched; cmfm_tap: the head layer after which tokens are mixed; mix_ratio: share of teacher tokens.
    init: "teacher" starts the student from the teacher's weights (same architecture; the patch embedding,
    whose input differs, stays random) with identity token projections; "random" from scratch; "auto"
    the teacher's when it has the student's architecture. stfd_mode: "relations" matches the clip's
    token-affinity matrices, "tokens" the projected tokens themselves."""

    input: str = "events"
    supervision: str = "teacher"
    stfd: bool = True
    cmfm: bool = True
    tcd: bool = True
    steps: int = 1500
    batch: int = 4
    lr: float = 5e-4
    clip_len: int = 4
    bins: int = 5
    seed: int = 0
    si_lambda: float = 0.85
    w_stfd: float = 1.0
    w_cmfm: float = 0.5
    w_tcd: float = 1.0
    stfd_taps: tuple[int, ...] = (1, 2, 3)
    cmfm_tap: int = 1
    mix_ratio: float = 0.5
    init: str = "auto"
    stfd_mode: str = "relations"
    log_every: int = 25
    checkpoint_every: int = 250
    net: NetConfig = field(default_factory=NetConfig)

    def __post_init__(self) -> None:
        if isinstance(self.net, dict):
            self.net = NetConfig(**self.net)
        self.stfd_taps = tuple(self.stfd_taps)
        if min(self.w_stfd, self.w_cmfm, self.w_tcd) < 0:
            raise ConfigError("--w-stfd, --w-cmfm and --w-tcd must be >= 0")
        if self.input not in ("events", "rgb") or self.supervision not in ("teacher", "gt"):
            raise ConfigError(f"input must be events|rgb and supervision teacher|gt, got {self.input}, "
                              f"{self.supervision}")
        if self.steps < 1 or self.batch < 1 or self.clip_len < 2 or self.bins < 1 or not (0 < self.lr < 1):
            raise ConfigError("--steps, --batch >= 1, --clip-len >= 2, --bins >= 1 and 0 < --lr < 1 required")
        if not (0 <= self.mix_ratio <= 1 and 0 <= self.si_lambda <= 1) or not (0 <= self.cmfm_tap < 3):
            raise ConfigError("mix ratio and si_lambda must be in [0, 1], cmfm_tap in 0..2")
        if self.stfd_mode not in ("tokens", "relations"):
            raise ConfigError(f"stfd_mode must be tokens or relations, got {self.stfd_mode!r}")
        if self.init not in ("auto", "random", "teacher"):
            raise ConfigError(f"init must be auto, random or teacher, got {self.init!r}")
        if any(not 0 <= t < 4 for t in self.stfd_taps):
            raise ConfigError("stfd taps index the four head layers (0..3)")
        self.net.in_channels = 3 if self.input == "rgb" else self.bins

    @property
    def distilling(self) -> bool:
        return self.supervision == "teacher"

    def name(self) -> str:
        """Short description: gt / output-only / +stfd+cmfm+tcd ..."""
        if not self.distilling:
            return f"{self.input}, ground truth"
        parts = [p for p, on in (("stfd", self.stfd), ("cmfm", self.cmfm), ("tcd", self.tcd)) if on]
        return "output only" if not parts else "+" + "+".join(parts)


def _teacher_targets(teacher: GeometryTeacher, clips: EventClips, ids: list[int], cache: dict[int, dict],
                     grid: tuple[int, int]) -> dict[str, Any]:
    """Teacher log depth [B,S,H,W] and tokens (4 x [B,S,P,D] on the student's grid) for these clips,
    computed once per clip and kept."""
    missing = sorted({i for i in ids if i not in cache})
    if missing:
        out = teacher(clips.batch(missing)["rgb"])
        toks = [match_grid(t, out["grid"], grid) for t in out["tokens"]]
        for j, i in enumerate(missing):
            cache[i] = {"log_depth": out["log_depth"][j], "tokens": [t[j] for t in toks]}
    return {"log_depth": torch.stack([cache[i]["log_depth"] for i in ids]),
            "tokens": [torch.stack([cache[i]["tokens"][k] for i in ids]) for k in range(4)]}


def _same_architecture(source, cfg: NetConfig) -> bool:
    """Whether ``source`` is a GeometryNet whose configuration equals cfg but for the input channels."""
    if not isinstance(source, GeometryNet):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k != "in_channels"}  # noqa: E731
    return strip(source.cfg.to_dict()) == strip(cfg.to_dict())


def _init_from_teacher(net: GeometryNet, proj: TokenProjector, teacher: GeometryTeacher) -> None:
    """Copy every teacher weight whose shape matches (all but the patch embedding) and make the token
    projections identities (student and teacher then share one token space)."""
    source = getattr(teacher, "net", None)
    if not _same_architecture(source, net.cfg):
        raise ConfigError("--init teacher needs a teacher of the student's architecture (the bundled kind); "
                          "use --init random")
    own = net.state_dict()
    net.load_state_dict({k: v if v.shape == own[k].shape else own[k] for k, v in source.state_dict().items()})
    with torch.no_grad():
        for lin in [*proj.to_teacher, proj.to_student]:
            if lin.weight.shape[0] == lin.weight.shape[1]:
                lin.weight.copy_(torch.eye(lin.weight.shape[0]))
                lin.bias.zero_()


class EventDepthTask(TrainTask):
    """One step: a batch of random clips, the scale-invariant log-depth loss against ground truth or the
    teacher, plus the switched-on STFD / CMFM / TCD terms; AdamW with warm-up and cosine decay."""

    def __init__(self, cfg: DistillConfig, clips: EventClips, teacher: GeometryTeacher | None, init: str,
                 resume: bool, extra_info: dict[str, Any], generator: torch.Generator,
                 dist: DistEnv | None = None) -> None:
        self.name, self.cfg, self.clips, self.teacher = f"event-depth {cfg.name()}", cfg, clips, teacher
        self.extra_info, self.gen, self.dist = extra_info, generator, dist or DistEnv()
        if cfg.batch < self.dist.world_size:
            raise ConfigError(f"batch={cfg.batch} is smaller than the {self.dist.world_size} ranks")
        # data-parallel: `gen` (the same on every rank) draws the batch; CMFM's mixing draws per rank
        self.local_gen = rank_generator(cfg.seed + 1, self.dist) if self.dist.distributed else generator
        with seeded_init(cfg.seed):
            self.net = GeometryNet(cfg.net)
            tdim = None
            if cfg.distilling and (cfg.stfd or cfg.cmfm):
                tdim = _teacher_targets(teacher, clips, [0], {}, (1, 1))["tokens"][0].shape[-1]
            self.proj = TokenProjector(cfg.net.dim, tdim or cfg.net.dim, len(cfg.stfd_taps))
        if init == "teacher" and not resume:
            _init_from_teacher(self.net, self.proj, teacher)
        self.params = list(self.net.parameters()) + (list(self.proj.parameters()) if tdim else [])
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=1e-4)
        self.warm = min(100, cfg.steps // 10 + 1)
        self.cache: dict[int, dict] = {}
        self.rec: dict[str, float] = {}
        self.net.train()

    def _set_lr(self, at: int) -> None:
        """Linear warm-up, then cosine decay to 0 at cfg.steps."""
        f = min(1.0, (at + 1) / self.warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, at / self.cfg.steps)))
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * f

    def _loss(self, pred: dict[str, Any], x: torch.Tensor, target: torch.Tensor, tgt: dict[str, Any] | None,
              rec: dict[str, float]) -> torch.Tensor:
        """The step's objective; fills rec with each term."""
        cfg, net = self.cfg, self.net
        loss = si_log_loss(pred["log_depth"], target, cfg.si_lambda)
        rec["depth"] = float(loss.detach())
        if cfg.input == "rgb":
            loss = loss + confidence_loss(pred["confidence"], pred["log_depth"], target)
        if tgt is not None and cfg.stfd:
            s_taps = [pred["tokens"][net.taps[k]] for k in cfg.stfd_taps]
            t_taps = [tgt["tokens"][k] for k in cfg.stfd_taps]
            term = (stfd_loss(s_taps, t_taps, self.proj) if cfg.stfd_mode == "tokens"
                    else stfd_relation_loss(s_taps, t_taps))
            loss, rec["stfd"] = loss + cfg.w_stfd * term, float(term.detach())
        if tgt is not None and cfg.cmfm:
            m = net.taps[cfg.cmfm_tap]
            t_tok = tgt["tokens"][cfg.cmfm_tap]
            mixed = mix_tokens(pred["tokens"][m], self.proj.to_student(F.layer_norm(t_tok, t_tok.shape[-1:])),
                               cfg.mix_ratio, self.local_gen)
            layers = pred["tokens"][:m] + [mixed] + net.run(mixed, m + 1)
            aux = net.decode(layers, pred["grid"], tuple(x.shape[-2:]))
            term = si_log_loss(aux["log_depth"], target, cfg.si_lambda)
            loss, rec["cmfm"] = loss + cfg.w_cmfm * term, float(term.detach())
        if tgt is not None and cfg.tcd:
            term = tcd_loss(pred["log_depth"], target)
            loss, rec["tcd"] = loss + cfg.w_tcd * term, float(term.detach())
        return loss

    def step(self, step: int, progress: float) -> StepResult:
        """One batch of clips (data-parallel: this rank's contiguous share of it, its loss scaled by the share
        and the gradients summed over the ranks)."""
        cfg, rec = self.cfg, self.rec
        ids = torch.randint(len(self.clips), (cfg.batch,), generator=self.gen).tolist()
        lo, hi = shard_range(cfg.batch, self.dist)
        ids = ids[lo:hi]
        b = self.clips.batch(ids)
        x = b["rgb"] * 2 - 1 if cfg.input == "rgb" else b["vox"]
        pred = self.net(x)
        tgt = _teacher_targets(self.teacher, self.clips, ids, self.cache, pred["grid"]) if cfg.distilling else None
        target = tgt["log_depth"] if tgt is not None else depth_target(b["depth"])
        loss = self._loss(pred, x, target, tgt, rec)
        if not torch.isfinite(loss):
            raise NumericalError(f"event-depth training: loss is {float(loss)} at step {step}; "
                                 "lower --lr (last checkpoint kept)")
        self.opt.zero_grad(set_to_none=True)
        (loss * ((hi - lo) / cfg.batch) if self.dist.distributed else loss).backward()
        if self.dist.distributed:
            all_reduce_gradients(self.params)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self._set_lr(step)
        self.opt.step()
        rec["loss"] = float(loss.detach())
        return StepResult(dict(rec), f"loss {rec['loss']:.3f}")

    def save(self, out: Path, meta: dict[str, Any]) -> None:
        save_net(out, self.net, {**self.extra_info, "steps": meta["step"], "seconds": round(meta["elapsed"], 2)})
        save_train_state(out, self.opt, meta, self.gen, {f"proj.{k}": v for k, v in self.proj.state_dict().items()})

    def restore(self, out: Path) -> dict[str, Any]:
        from .teacher import load_net

        if not (out / "weights.safetensors").exists():
            raise RunError(f"{out}: nothing to resume")
        old, old_cfg = load_net(out)
        if changed_options(old_cfg.get("distill", {}), self.extra_info["distill"]):
            raise ConfigError(f"{out}: was trained with other settings; resume with the same options")
        self.net.load_state_dict(old.state_dict())
        meta, extra = load_train_state(out, self.opt, self.gen)
        self.proj.load_state_dict({k[5:]: v for k, v in extra.items() if k.startswith("proj.")}, strict=False)
        return meta

    def finish(self, out: Path) -> dict[str, Any]:
        return {"final_loss": self.rec.get("loss")}


def train_network(data: Path, out: Path, cfg: DistillConfig, teacher: GeometryTeacher | None = None,
                  teacher_info: dict | None = None, resume: bool = False, dist: DistEnv | None = None,
                  show_progress: bool = True, callback: Callable[[int, dict], None] | None = None) -> dict[str, Any]:
    """Train one network on the clips of ``data``; writes RUN (config.json, weights.safetensors,
    log.jsonl, metrics.json, train_state.safetensors) and returns the metrics."""
    if (cfg.distilling or cfg.init == "teacher") and teacher is None:
        raise ConfigError("distillation and --init teacher need a teacher")
    init = cfg.init
    if init == "auto":
        init = "teacher" if _same_architecture(getattr(teacher, "net", None), cfg.net) else "random"
    out = Path(out)
    if not resume and (out / "weights.safetensors").exists():
        raise ConfigError(f"{out}: already holds a run (use --resume to continue it, or a new --out)")
    barrier()  # data-parallel: every rank has looked at `out` before rank 0 writes into it
    clips = EventClips(data, cfg.clip_len, cfg.bins)
    extra_info = {"role": "teacher" if cfg.input == "rgb" else "student", "distill": asdict(cfg),
                  "method": cfg.name(), "data": str(data), "init": init,
                  **({"teacher": teacher_info} if teacher_info else {})}
    dist = dist or DistEnv()
    task = EventDepthTask(cfg, clips, teacher, init, resume, extra_info, make_generator(cfg.seed), dist)
    metrics = train(task, out, LoopConfig.of(cfg), resume=resume, rank=dist.rank, show_progress=show_progress,
                    callback=callback, metrics={"method": cfg.name()})
    minutes = {"minutes": round(metrics["seconds"] / 60, 3)}
    return update_metrics(out, minutes) if dist.writer else {**metrics, **minutes}


def distill_events(data: Path, out: Path, cfg: DistillConfig, teacher: Path | None = None,
                   teacher_weights: Path | None = None, resume: bool = False, dist: DistEnv | None = None,
                   show_progress: bool = True) -> dict[str, Any]:
    """`train_network` of the event student with its teacher loaded by `load_geometry_teacher(teacher,
    teacher_weights)` (default: the bundled one) when the run needs one: to distil from, or, with
    ground-truth supervision, for the initial weights (init other than "random"). Returns the metrics."""
    needs_teacher = cfg.distilling or cfg.init != "random"
    model, info = load_geometry_teacher(teacher, teacher_weights) if needs_teacher else (None, None)
    return train_network(data, out, cfg, model, info, resume=resume, dist=dist, show_progress=show_progress)
