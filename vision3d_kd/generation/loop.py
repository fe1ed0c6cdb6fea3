"""The text-to-3D loop: each step renders `batch` random cameras of every particle (random Lambertian /
albedo / textureless shading), asks the guidance for its score-distillation loss with the
view-dependent prompt and the cameras, adds the regularisers and takes an Adam step. Resumable: the
run directory holds the student, the occupancy grid, optimizer moments, the RNG and VSD's LoRA.

Particles beyond the first are written to RUN/particles/<k>/ (each a run directory of its own)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..cameras import RandomCameraSampler
from ..data.object_views import random_light
from ..guidance.bsd import BSD
from ..guidance.prior import CameraCondition, DiffusionPrior
from ..guidance.prompts import ViewPrompts
from ..guidance.sds import SDS, ScoreDistillation
from ..guidance.vsd import VSD
from ..render.shading import Shader
from ..train.driver import StepResult, TrainTask, make_generator, seeded_init, train
from ..train.loop import LoopConfig
from ..train.state import load_train_state, save_train_state
from .config import GenerationConfig
from .students import build_student

__all__ = ["generate", "GenerateTask", "build_guidance", "particle_dir"]

GUIDANCES: dict[str, type[ScoreDistillation]] = {"sds": SDS, "vsd": VSD, "bsd": BSD}


def build_guidance(method: str, prior: DiffusionPrior, setup: GenerationConfig) -> ScoreDistillation:
    return GUIDANCES[method](prior, setup.guidance)


def particle_dir(out: Path, k: int) -> Path:
    """Run directory of particle k (0 is the run itself)."""
    return Path(out) if k == 0 else Path(out) / "particles" / str(k)


def _pick_shading(g, rng: random.Random) -> str:
    u = rng.random()
    return "albedo" if u < g.p_albedo else "lambertian" if u < g.p_albedo + g.p_lambertian else "textureless"


def _render_config(g, size: int) -> dict[str, Any]:
    """The run's `render` section (what export, render and view read)."""
    return {"step_size": g.step_size, "radius": sum(g.radius) / 2, "fov_y_deg": sum(g.fov_deg) / 2,
            "elevation_deg": sum(g.elevation_deg) / 2, "elevation_range_deg": list(g.elevation_deg),
            "width": size, "height": size}


class GenerateTask(TrainTask):
    """One step: `batch` random cameras of every particle under a random shading, the guidance's
    score-distillation loss for the view-dependent prompt, the regularisers, an Adam step per particle."""

    def __init__(self, prompt: str, setup: GenerationConfig, prior: DiffusionPrior, run_cfg: dict[str, Any],
                 device: torch.device, generator: torch.Generator) -> None:
        g = self.g = setup.generate
        self.name, self.setup, self.run_cfg, self.gen = f"generate {setup.method}", setup, run_cfg, generator
        self.rng = random.Random(g.seed)  # shading and light choices
        size = run_cfg["render"]["width"]
        self.sampler = RandomCameraSampler(g.elevation_deg, g.azimuth_deg, g.radius, g.fov_deg, size, size)
        self.prompts = ViewPrompts(prior, prompt, setup.guidance.negative_prompt, g.view_dependent_prompt)
        with seeded_init(g.seed):
            self.guidance = build_guidance(setup.method, prior, setup)
            self.students = [build_student(setup, device, generator) for _ in range(g.particles)]
        self.device = device

    def step(self, step: int, progress: float) -> StepResult:
        g, gen, rng = self.g, self.gen, self.rng
        params = self.sampler.sample_params(g.batch, gen)
        cams = self.sampler.cameras(params).to(self.device)
        camera = CameraCondition(params["elevation_deg"], params["azimuth_deg"], params["radius"])
        emb = self.prompts.for_cameras(camera)
        rec: dict[str, Any] = {}
        total = 0.0
        for k, s in enumerate(self.students):
            s.before_step(step, progress, gen)
            mode = _pick_shading(g, rng)
            light = dataclasses.replace(random_light(rng), ambient=rng.uniform(*g.ambient))
            shader = Shader(None, mode, light, fd_step=g.step_size * 0.5, orientation=g.lambda_orient > 0)
            views = [s.render(cams, i, None if mode == "albedo" and not shader.orientation else shader, gen)
                     for i in range(g.batch)]
            images = torch.stack([v["rgb"] for v in views]).permute(0, 3, 1, 2)
            opacity = torch.stack([v["opacity"] for v in views])
            loss, info = self.guidance.loss(images, emb, camera, progress, gen)
            orient = torch.stack([v["orientation"] for v in views]).mean()
            loss = loss + g.lambda_orient * orient + g.lambda_sparsity * opacity.mean()
            if g.lambda_opaque > 0:
                o = opacity.clamp(1e-4, 1 - 1e-4)
                loss = loss - g.lambda_opaque * (o * o.log() + (1 - o) * (1 - o).log()).mean()
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            s.optimizer.step()
            total += float(loss.detach())
            if k == 0:
                rec = {**info, "orientation": float(orient.detach()), "opacity": float(opacity.detach().mean()),
                       "shading": mode}
        rec["loss"] = total / len(self.students)
        return StepResult(rec, f"loss {rec['loss']:.3g}  t {rec.get('t', 0):.0f}")

    def save(self, out: Path, meta: dict[str, Any]) -> None:
        vsd = isinstance(self.guidance, VSD)
        extra = {f"lora.{k}": v for k, v in self.guidance.state_dict().items()} if vsd else None
        for k, s in enumerate(self.students):
            run = particle_dir(out, k)
            s.save(run, {**self.run_cfg, "particle": k})
            save_train_state(run, s.optimizer, {**meta, "py_rng": self.rng.getstate()},
                             self.gen if k == 0 else torch.Generator(), extra if k == 0 else None)

    def restore(self, out: Path) -> dict[str, Any]:
        for k, s in enumerate(self.students):
            s.load(particle_dir(out, k))
        meta, extra = load_train_state(out, self.students[0].optimizer, self.gen)
        for k, s in enumerate(self.students[1:], 1):
            load_train_state(particle_dir(out, k), s.optimizer, torch.Generator())
        version, state, gauss = meta["py_rng"]
        self.rng.setstate((version, tuple(state), gauss))
        if isinstance(self.guidance, VSD):
            self.guidance.load_state_dict({k[5:]: v for k, v in extra.items() if k.startswith("lora.")})
        return meta


def generate(prompt: str, out: Path, setup: GenerationConfig, prior: DiffusionPrior, prior_path: str | None = None,
             resume: bool = False, device: torch.device | str = "cpu", rank: int = 0, show_progress: bool = True,
             callback: Callable[[int, dict[str, Any]], None] | None = None,
             prior_prompt: str | None = None) -> dict[str, Any]:
    """Optimise setup.generate.particles students for `prompt` (the prior is given `prior_prompt` when set:
    the bundled prior's own caption of it); returns metrics (also RUN/metrics.json)."""
    setup.validate()
    prompt = prompt.strip()
    said = (prior_prompt or prompt).strip()
    g, out = setup.generate, Path(out)
    size = g.size or prior.image_size
    run_cfg = {"generate": setup.to_dict(), "prompt": prompt, "prior_prompt": said, "prior": prior_path,
               "render": _render_config(g, size)}
    task = GenerateTask(said, setup, prior, run_cfg, torch.device(device), make_generator(g.seed))
    info = {"prompt": prompt, "method": setup.method, "particles": g.particles, "student": g.student, "seed": g.seed}
    return train(task, out, LoopConfig.of(g), resume=resume, rank=rank, show_progress=show_progress,
                 callback=callback, metrics=info)
