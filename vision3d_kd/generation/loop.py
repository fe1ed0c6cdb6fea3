"""The text-to-3D loop: each step renders `batch` random cameras of every particle (random Lambertian /
albedo / textureless shading), asks the guidance for its score-distillation loss with the
view-dependent prompt and the cameras, adds the regularisers and takes an Adam step. Resumable: the
run directory holds the student, the occupancy grid, optimizer moments, the RNG and VSD's LoRA.

Particles beyond the first are written to RUN/particles/<k>/ (each a run directory of its own).

`generate.lambda_albedo_smooth` adds the colour-smoothness penalty of field students' renders
(`render.shading`, against colour speckle).

With a layout (LucidDreaming, `guidance.lucid`) each step has one term per object — its cameras orbiting its
box, rays clipped to it, its own prompt — plus the optional whole-scene term; the terms (each with its
regularisers) are summed before the Adam step."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..assets import is_bundled_prior
from ..cameras import RandomCameraSampler
from ..data.layout import Layout
from ..data.object_views import random_light
from ..errors import ConfigError
from ..guidance.bsd import BSD
from ..guidance.lucid import Target, layout_targets, whole_target
from ..guidance.prior import CameraCondition, DiffusionPrior
from ..guidance.prompts import ViewPrompts
from ..guidance.sds import SDS, ScoreDistillation
from ..guidance.vsd import VSD
from ..guidance.white_proxy import proxy_albedo_scale, proxy_caption
from ..parallel import DistEnv, all_reduce_gradients, rank_generator, shard_range
from ..render.shading import Shader
from ..train.driver import StepResult, TrainTask, make_generator, seeded_init, train
from ..train.loop import LoopConfig
from ..train.state import load_train_state, save_train_state
from .config import GenerationConfig
from .lucid import layout_setup
from .students import build_student

__all__ = ["generate", "GenerateTask", "build_guidance", "particle_dir", "white_proxy_for", "WHITE_PROXY"]

WHITE_PROXY = 0.5  # generate.white_proxy with the bundled prior (bench/TUNING.md)
GUIDANCES: dict[str, type[ScoreDistillation]] = {"sds": SDS, "vsd": VSD, "bsd": BSD}


def build_guidance(method: str, prior: DiffusionPrior, setup: GenerationConfig) -> ScoreDistillation:
    return GUIDANCES[method](prior, setup.guidance)


def particle_dir(out: Path, k: int) -> Path:
    """Run directory of particle k (0 is the run itself)."""
    return Path(out) if k == 0 else Path(out) / "particles" / str(k)


def _pick_shading(g, rng: random.Random) -> str:
    u = rng.random()
    return "albedo" if u < g.p_albedo else "lambertian" if u < g.p_albedo + g.p_lambertian else "textureless"


def _add_proxies(targets: list[Target], prior: DiffusionPrior, negative: str | None, view_dependent: bool) -> bool:
    """Give every one-object target whose prompt names white its gray proxy's prompts (`guidance.white_proxy`;
    not the whole-scene term, whose other objects the scale would darken); whether any got one."""
    cache: dict[str, ViewPrompts] = {}
    for t in targets:
        said = None if t.name == "scene" else proxy_caption(t.prompts.prompt)
        if said is not None:
            if said not in cache:
                cache[said] = ViewPrompts(prior, said, negative, view_dependent)
            t.proxy = cache[said]
    return bool(cache)


def white_proxy_for(setup: GenerationConfig, prior_path: str | Path | None) -> float:
    """generate.white_proxy as set, else WHITE_PROXY for the bundled prior (its world is all on white) and 0
    for any other (a real pipeline has seen other backgrounds; its prompts are free text)."""
    p = setup.generate.white_proxy
    return float(p) if p is not None else WHITE_PROXY if is_bundled_prior(prior_path) else 0.0


def _render_config(g, size: int) -> dict[str, Any]:
    """The run's `render` section (what export, render and view read)."""
    return {"step_size": g.step_size, "radius": sum(g.radius) / 2, "fov_y_deg": sum(g.fov_deg) / 2,
            "elevation_deg": sum(g.elevation_deg) / 2, "elevation_range_deg": list(g.elevation_deg),
            "width": size, "height": size}


class GenerateTask(TrainTask):
    """One step: `batch` random cameras of every particle under a random shading, the guidance's
    score-distillation loss for the view-dependent prompt, the regularisers, an Adam step per particle.
    With a `layout` (and `object_prompts`, what the prior is told per object) one such term per object on
    clipped rays, plus the whole-scene term over the last `harmonise` fraction (module docstring)."""

    def __init__(self, prompt: str, setup: GenerationConfig, prior: DiffusionPrior, run_cfg: dict[str, Any],
                 device: torch.device, generator: torch.Generator, layout: Layout | None = None,
                 object_prompts: list[str] | None = None, dist: DistEnv | None = None) -> None:
        g = self.g = setup.generate
        self.name, self.setup, self.run_cfg, self.gen = f"generate {setup.method}", setup, run_cfg, generator
        self.dist = dist or DistEnv()
        if self.dist.distributed:
            _check_data_parallel(setup, self.dist)
        # data-parallel: `gen` (the same on every rank) draws the cameras and the students' own updates; each
        # rank renders and noises its share of the step's views with its own generator
        self.local_gen = rank_generator(g.seed + 1, self.dist, device) if self.dist.distributed else generator
        self.rng = random.Random(g.seed)  # shading and light choices
        size = run_cfg["render"]["width"]
        self.sampler = RandomCameraSampler(g.elevation_deg, g.azimuth_deg, g.radius, g.fov_deg, size, size)
        neg, vd = setup.guidance.negative_prompt, g.view_dependent_prompt
        if layout is None:
            self.targets = [Target(ViewPrompts(prior, prompt, neg, vd))]
        else:
            self.targets = layout_targets(prior, layout, object_prompts or [o.prompt for o in layout.objects], neg, vd)
            if g.harmonise > 0:
                self.targets.append(whole_target(prior, layout, prompt, neg, 1.0 - g.harmonise, g.harmonise_t_max, vd))
        # the proxy's draw is made only when some target names white: other runs keep their random stream
        self.p_proxy = g.white_proxy if g.white_proxy and _add_proxies(self.targets, prior, neg, vd) else 0.0
        self.proxy_scale = proxy_albedo_scale(device) if self.p_proxy > 0 else None
        boxes = None if layout is None else [list(o.box) for o in layout.objects]
        with seeded_init(g.seed):
            self.guidance = build_guidance(setup.method, prior, setup)
            self.students = [build_student(setup, device, generator, boxes) for _ in range(g.particles)]
        self.device = device

    def _term(self, s, target: Target, cams, shader: Shader | None, camera: CameraCondition, progress: float,
              proxy: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
        """One target's loss for student `s`: its renders of this rank's share of `cams` (all of them in one
        process), score distillation, regularisers; scaled by the share so the ranks' gradients sum to the
        whole batch's. With `proxy` (and a target that has one, under a shading that shows the albedo) the
        gray proxy's albedo scale and prompts instead (`guidance.white_proxy`)."""
        g, gen = self.g, self.local_gen
        prompts = target.prompts
        if proxy and target.proxy is not None and shader is not None and shader.mode != "textureless":
            shader = dataclasses.replace(shader, albedo_scale=self.proxy_scale, freeze_albedo=not g.white_proxy_colour)
            prompts = target.proxy
        lo, hi = shard_range(g.batch, self.dist)
        views = [s.render(cams, i, shader, gen, target.box) for i in range(lo, hi)]
        images = torch.stack([v["rgb"] for v in views]).permute(0, 3, 1, 2)
        opacity = torch.stack([v["opacity"] for v in views])
        if self.dist.distributed:
            camera = CameraCondition(camera.elevation_deg[lo:hi], camera.azimuth_deg[lo:hi], camera.radius[lo:hi])
        loss, info = self.guidance.loss(images, prompts.for_cameras(camera), camera, progress, gen,
                                        target.t_max)
        orient = torch.stack([v["orientation"] for v in views]).mean()
        loss = loss + g.lambda_orient * orient + g.lambda_sparsity * opacity.mean()
        if g.lambda_albedo_smooth > 0 and "albedo_smooth" in views[0]:
            loss = loss + g.lambda_albedo_smooth * torch.stack([v["albedo_smooth"] for v in views]).mean()
        if g.lambda_opaque > 0:
            o = opacity.clamp(1e-4, 1 - 1e-4)
            loss = loss - g.lambda_opaque * (o * o.log() + (1 - o) * (1 - o).log()).mean()
        loss = loss * ((hi - lo) / g.batch)
        return loss, {**info, "orientation": float(orient.detach()), "opacity": float(opacity.detach().mean())}

    def step(self, step: int, progress: float) -> StepResult:
        g, gen, rng = self.g, self.gen, self.rng
        params = self.sampler.sample_params(g.batch, gen)
        camera = CameraCondition(params["elevation_deg"], params["azimuth_deg"], params["radius"])
        active = [(t, t.cameras(self.sampler, params).to(self.device)) for t in self.targets if t.active(progress)]
        rec: dict[str, Any] = {}
        total = 0.0
        for k, s in enumerate(self.students):
            s.before_step(step, progress, gen)
            mode = _pick_shading(g, rng)
            light = dataclasses.replace(random_light(rng), ambient=rng.uniform(*g.ambient))
            smooth = g.albedo_smooth_step if g.lambda_albedo_smooth > 0 else 0.0
            shader = Shader(None, mode, light, fd_step=g.step_size * 0.5, orientation=g.lambda_orient > 0,
                            smooth_step=smooth, smooth_colour_only=g.albedo_smooth_colour_only,
                            generator=self.local_gen)
            proxy = self.p_proxy > 0 and rng.random() < self.p_proxy
            use = None if mode == "albedo" and not shader.orientation and not proxy and not smooth else shader
            terms = [self._term(s, t, cams, use, camera, progress, proxy) for t, cams in active]
            loss = sum(t[0] for t in terms)
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.dist.distributed:
                all_reduce_gradients([p for group in s.optimizer.param_groups for p in group["params"]])
            s.optimizer.step()
            total += float(loss.detach())
            if k == 0:
                rec = {**terms[0][1], "shading": mode, **({"proxy": True} if proxy else {})}
                if len(terms) > 1:
                    rec["terms"] = len(terms)
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


def _check_data_parallel(setup: GenerationConfig, dist: DistEnv) -> None:
    """What data-parallel generation supports: a camera batch of at least one view per rank; SDS or BSD (VSD's
    LoRA trains inside the guidance); radiance-field students (splat students densify on their own)."""
    g = setup.generate
    if g.batch < dist.world_size:
        raise ConfigError(f"generate.batch={g.batch} is smaller than the {dist.world_size} ranks: give every rank "
                          "at least one view (--set generate.batch=N)")
    if setup.method == "vsd":
        raise ConfigError("--method vsd cannot run data-parallel yet (its LoRA trains inside the guidance)")
    if g.student == "splats":
        raise ConfigError("generate.student=splats cannot run data-parallel yet; use a field student")


def generate(prompt: str, out: Path, setup: GenerationConfig, prior: DiffusionPrior, prior_path: str | None = None,
             resume: bool = False, device: torch.device | str = "cpu", dist: DistEnv | None = None,
             show_progress: bool = True,
             callback: Callable[[int, dict[str, Any]], None] | None = None,
             prior_prompt: str | None = None, layout: Layout | None = None,
             object_prompts: list[str] | None = None) -> dict[str, Any]:
    """Optimise setup.generate.particles students for `prompt` (the prior is given `prior_prompt` when set:
    the bundled prior's own caption of it); returns metrics (also RUN/metrics.json). With a `layout`, the
    objects of the layout (`object_prompts`: what the prior is told for each), the student sized to it
    (`lucid.layout_setup`); `prompt` is then the scene's sentence (the whole-scene term's prompt)."""
    setup.validate()
    prompt = prompt.strip()
    said = (prior_prompt or prompt).strip()
    out = Path(out)
    user = setup
    if layout is not None:
        setup = layout_setup(setup, layout)
    proxy = white_proxy_for(setup, prior_path if prior_path is not None else getattr(prior, "path", None))
    setup = dataclasses.replace(setup, generate=dataclasses.replace(setup.generate, white_proxy=proxy))
    g = setup.generate
    size = g.size or prior.image_size
    render_cfg = _render_config(g, size)
    run_cfg = {"generate": user.to_dict(), "prompt": prompt, "prior_prompt": said, "prior": prior_path,
               "render": render_cfg}
    if layout is not None:
        render_cfg["radius"] *= layout.span_scale()
        run_cfg.update(layout=layout.to_dict(), object_prompts=list(object_prompts or []))
    dist = dist or DistEnv()
    task = GenerateTask(said, setup, prior, run_cfg, torch.device(device), make_generator(g.seed), layout,
                        object_prompts, dist)
    info = {"prompt": prompt, "method": setup.method, "particles": g.particles, "student": g.student, "seed": g.seed}
    return train(task, out, LoopConfig.of(g), resume=resume, rank=dist.rank, show_progress=show_progress,
                 callback=callback, metrics=info)
