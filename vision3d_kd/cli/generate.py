"""`v3kd generate "PROMPT" --method sds|vsd|bsd --out RUN`: text-to-3D by score distillation."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ..errors import ConfigError, RunError

__all__ = ["register", "generate_command"]


def generate_command(
    prompt: str = typer.Argument(..., help="What to make, e.g. 'a red mug' (view suffixes are added per camera)."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default: runs/<prompt>-<method>-<seed>)."),
    method: str = typer.Option("sds", "--method",
                               help="sds (DreamFusion), vsd (ProlificDreamer) or bsd (PlacidDreamer)."),
    prior: Path = typer.Option(None, "--prior", help=(
        "Local diffusers pipeline directory (Stable Diffusion 1.x/2.x, DeepFloyd-IF stage I style, or a prior "
        "trained by tools/train_prior.py); default: the bundled prior in vision3d_kd/assets/prior.")),
    student: str = typer.Option(None, "--student", "--field", help=(
        "3D student: hashgrid (default), mlp, grid, tensorf-vm, tensorf-cp or splats.")),
    steps: int = typer.Option(None, "--steps", help="Distillation steps (default from the method's config)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (cameras, noise, initialisation)."),
    particles: int = typer.Option(None, "--particles", help="Number of students optimised together (VSD particles)."),
    negative: str = typer.Option(None, "--negative", help="Negative prompt (replaces the unconditional one in CFG)."),
    config: Path = typer.Option(None, "--config", help="YAML with generate:/field:/guidance: sections "
                                "(default vision3d_kd/configs/generate/<method>.yaml)."),
    overrides: list[str] = typer.Option([], "--set", help="Override: generate.KEY=V, field.KEY=V or guidance.KEY=V "
                                        "(repeatable), e.g. --set guidance.guidance_scale=50."),
    no_mesh: bool = typer.Option(False, "--no-mesh", help="Skip writing RUN/mesh.glb."),
    no_video: bool = typer.Option(False, "--no-video", help="Skip writing RUN/turntable.mp4."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint "
                                "(with the settings it was started with)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Optimise a 3D student so that its renders from random cameras look like PROMPT to a diffusion prior;
    writes a run directory (weights, config.json, metrics.json, log.jsonl) plus mesh.glb and turntable.mp4."""

    from ..assets import default_prior_path
    from ..checkpoint import WEIGHTS, write_json
    from ..generation.config import load_generate_config, run_name
    from ..generation.loop import generate
    from ..generation.outputs import write_outputs
    from ..guidance.diffusers_prior import DiffusersPrior
    from .common import pick_device

    if not prompt.strip():
        raise ConfigError("the prompt is empty")
    sets = list(overrides)
    for key, value in (("steps", steps), ("particles", particles), ("student", student)):
        if value is not None:
            sets.append(f"generate.{key}={value}")
    sets.append(f"generate.seed={seed}")
    if negative is not None:
        sets.append(f"guidance.negative_prompt={negative!r}")
    setup = load_generate_config(method, config, sets)
    if resume and out is not None and (out / "config.json").is_file():
        setup, prompt = _saved_setup(out, prompt)
    if out is None:
        out = Path("runs") / run_name(prompt, method, seed)
    if resume and not (out / "train_state.safetensors").is_file():
        raise RunError(f"{out}: nothing to resume (no train_state.safetensors)")
    if not resume and (out / WEIGHTS).exists():
        raise RunError(f"{out}: already holds a run; use --resume or another --out")
    dev = pick_device(device)
    prior_dir = default_prior_path(prior)
    model = DiffusersPrior(prior_dir, device=dev)
    t0 = time.perf_counter()
    metrics = generate(prompt, out, setup, model, str(prior_dir), resume=resume, device=dev, show_progress=not quiet)
    g = setup.generate
    metrics.update(write_outputs(out, g.mesh_resolution, g.video_frames, g.video_size, not no_mesh, not no_video))
    metrics["total_seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out / "metrics.json", metrics)
    parts = [f"{metrics['steps']} steps in {metrics['seconds']:.0f} s"]
    if not no_mesh:
        faces = metrics.get("mesh_faces", 0)
        parts.append(f"mesh.glb {faces} faces" if faces else "no mesh (empty)")
    if not no_video:
        parts.append("turntable.mp4")
    print(f"wrote {out}: " + ", ".join(parts) + f" (total {metrics['total_seconds']:.0f} s)")


def _saved_setup(run: Path, prompt: str):
    """--resume: the settings the run was started with (the flags are ignored) and its prompt, which must
    match the one given."""
    from ..checkpoint import read_config
    from ..generation.config import GenerationConfig

    cfg = read_config(run)
    if "generate" not in cfg or "prompt" not in cfg:
        raise RunError(f"{run}: not a `v3kd generate` run (no generate settings in config.json)")
    if cfg["prompt"] != prompt.strip():
        raise RunError(f"{run}: was started for {cfg['prompt']!r}, not {prompt.strip()!r}")
    setup = GenerationConfig.from_dict(cfg["generate"])
    setup.validate()
    return setup, cfg["prompt"]


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
