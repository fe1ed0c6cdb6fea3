"""A text-to-3D run directory end to end (what `v3kd generate` does): where it goes, the settings a resumed run
keeps, the prior, the loop (`loop.generate`), then mesh.glb and turntable.mp4 (`outputs.write_outputs`).
With a layout (LucidDreaming) every object's prompt is read as a lone prompt would be, and after the loop
the occupancy grid is kept to the boxes (no floater pruning or gap closing: they would join or drop objects)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..assets import is_bundled_prior
from ..checkpoint import WEIGHTS, read_config
from ..data.layout import Layout
from ..errors import ConfigError, RunError
from ..guidance.diffusers_prior import load_prior
from ..guidance.pipeline_files import parse_dtype
from ..guidance.prior import DiffusionPrior
from ..guidance.prompt_words import refusal, understand
from ..parallel import DistEnv, barrier
from ..runs import update_metrics
from .config import GenerationConfig, run_name
from .loop import generate
from .lucid import clear_outside_boxes
from .outputs import write_outputs

__all__ = ["default_run_dir", "saved_setup", "generate_run", "prompt_for_prior"]


def default_run_dir(prompt: str, method: str, seed: int) -> Path:
    """runs/<prompt slug>-<method>-<seed> (relative to the working directory)."""
    return Path("runs") / run_name(prompt, method, seed)


def saved_setup(run: Path, prompt: str, layout: Layout | None = None) -> tuple[GenerationConfig, str]:
    """The settings a generation run was started with and its prompt, which must match `prompt` (and its
    layout `layout`) (resume)."""
    cfg = read_config(run)
    if "generate" not in cfg or "prompt" not in cfg:
        raise RunError(f"{run}: not a `v3kd generate` run (no generate settings in config.json)")
    if cfg["prompt"] != prompt.strip():
        raise RunError(f"{run}: was started for {cfg['prompt']!r}, not {prompt.strip()!r}")
    if cfg.get("layout") != (None if layout is None else layout.to_dict()):
        raise RunError(f"{run}: was started with another layout (or none); resume it with the one it was made with")
    setup = GenerationConfig.from_dict(cfg["generate"])
    setup.validate()
    return setup, cfg["prompt"]


def prompt_for_prior(prompt: str, prior_path: str | Path | None, allow_unknown_words: bool = False
                     ) -> tuple[str, list[str]]:
    """(the text the prior is given, notes to show) for `prompt`. The bundled prior (`prior_path` None or its
    directory) gets its own caption of the prompt (`guidance.prompt_words.understand`); a prompt it cannot
    read is a ConfigError naming the unknown words, unless `allow_unknown_words` (then the prompt goes as
    typed, unknown words becoming [UNK]). Other priors get the prompt as typed."""
    if not is_bundled_prior(prior_path):
        return prompt.strip(), []
    understood = understand(prompt)
    if understood.ok:
        return understood.caption, [f"read as {understood.caption!r}", *understood.notes]
    if not allow_unknown_words:
        raise ConfigError(refusal(prompt, understood))
    return prompt.strip(), ["the bundled prior does not understand all of this prompt; going on anyway"]


def generate_run(prompt: str, setup: GenerationConfig, out: Path | None = None,
                 prior: DiffusionPrior | str | Path | None = None, *, resume: bool = False, mesh: bool = True,
                 video: bool = True, device: torch.device | str = "cpu", show_progress: bool = True,
                 allow_unknown_words: bool = False, layout: Layout | None = None,
                 dist: DistEnv | None = None) -> tuple[Path, dict[str, Any]]:
    """Generate `prompt` with `setup` into run directory `out` (default `default_run_dir`), then write
    RUN/mesh.glb and RUN/turntable.mp4 (unless `mesh` / `video` is False). The bundled prior is given its
    own caption of `prompt`, or the run is refused before anything is written (`prompt_for_prior`).

    `prior`: a loaded prior, a local diffusers pipeline directory, or None for the bundled prior. With
    `resume`, an existing run continues with the settings and prompt it was started with (`setup` is
    ignored); without, a directory already holding a run is refused. Returns (run directory, metrics also in
    RUN/metrics.json: the loop's, mesh_faces / mesh_vertices, total_seconds after the prior was loaded).

    `layout`: compose its objects instead (LucidDreaming); `prompt` may then be "" (the layout's sentence, or
    its object prompts joined with 'and', is the run's prompt). `dist`: this rank's place in a data-parallel
    run (torchrun); rank 0 alone writes, and the others return (out, {}) after training."""
    dist = dist or DistEnv()
    if layout is not None and not prompt.strip():
        prompt = layout.scene_prompt()
    if not prompt.strip():
        raise ConfigError("the prompt is empty")
    if resume and out is not None and (Path(out) / "config.json").is_file():
        setup, prompt = saved_setup(Path(out), prompt, layout)
    out = Path(out) if out is not None else default_run_dir(prompt, setup.method, setup.generate.seed)
    if resume and not (out / "train_state.safetensors").is_file():
        raise RunError(f"{out}: nothing to resume (no train_state.safetensors)")
    if not resume and (out / WEIGHTS).exists():
        raise RunError(f"{out}: already holds a run; use --resume or another --out")
    barrier()  # data-parallel: every rank has looked at `out` before rank 0 writes into it
    saved = read_config(out).get("prior_prompt") if resume else None  # a resumed run keeps what the prior heard
    given = getattr(prior, "path", None) if isinstance(prior, DiffusionPrior) else prior
    objects: list[str] = []
    if layout is None:
        said, notes = (saved, []) if saved else prompt_for_prior(prompt, given, allow_unknown_words)
    else:
        read = [prompt_for_prior(o.prompt, given, allow_unknown_words) for o in layout.objects]
        objects = [r[0] for r in read]
        notes = [f"object {k + 1}: {n}" for k, r in enumerate(read) for n in r[1]]
        said = saved or (" and ".join(objects) if is_bundled_prior(given) else prompt)
    if isinstance(prior, DiffusionPrior):
        model, prior_path = prior, getattr(prior, "path", None)
    else:
        model = load_prior(prior, device, parse_dtype(setup.generate.prior_dtype))
        prior_path = model.path
    if layout is not None and dist.writer:  # the layout the run is made from, whichever way it was written
        out.mkdir(parents=True, exist_ok=True)
        layout.write(out / "layout.json")
    t0 = time.perf_counter()
    generate(prompt, out, setup, model, None if prior_path is None else str(prior_path), resume=resume,
             device=device, dist=dist, show_progress=show_progress, prior_prompt=said, layout=layout,
             object_prompts=objects)
    if not dist.writer:
        return out, {}
    g = setup.generate
    prune = g.floater_keep_ratio if g.prune_floaters else None
    if layout is None:
        outputs = write_outputs(out, g.mesh_resolution, g.video_frames, g.video_size, mesh, video, prune, g.close_gaps)
    else:
        cleared = clear_outside_boxes(out, layout)
        scales = [o.scale for o in layout.objects]
        outputs = write_outputs(out, g.mesh_resolution, g.video_frames, g.video_size, mesh, video, prune, g.close_gaps,
                                min_component=0.05 * (min(scales) / max(scales)) ** 3,
                                boxes=[list(o.box) for o in layout.objects])
        outputs["cells_cleared_outside_boxes"] = round(cleared, 6)
    return out, update_metrics(out, {**outputs, "total_seconds": round(time.perf_counter() - t0, 2),
                                     "prompt_notes": notes})
