"""`v3kd generate "PROMPT" --method sds|vsd|bsd --out RUN`: text-to-3D by score distillation; with
`--layout FILE` or `--layout-from TEXT [--llm PATH]`, several objects in their boxes (LucidDreaming)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "generate_command"]


def generate_command(
    prompt: str = typer.Argument(None, help="What to make, e.g. 'a red mug' (view suffixes are added per camera); "
                                 "with a layout, the scene's sentence (optional)."),
    layout: Path = typer.Option(None, "--layout", help=(
        "Compose several objects (LucidDreaming): a layout file, JSON {\"objects\": [{\"prompt\": ..., \"box\": "
        "\\[xmin, ymin, zmin, xmax, ymax, zmax]}]} (world units, z up) or the paper's lines ('a cow', \\[x, y, z, "
        "w, h, d]) on a 0-512 canvas. Written to RUN/layout.json.")),
    layout_from: str = typer.Option(None, "--layout-from", help=(
        "Write the layout from a sentence such as 'a red mug and a blue cube on a table' (counts; on, above, next "
        "to, left of, right of, behind, in front of) and compose it.")),
    llm: Path = typer.Option(None, "--llm", help=(
        "With --layout-from: a local transformers causal language model that writes the layout instead of the "
        "rules (prompted with in-context examples, its answer read as a layout file).")),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory (default: runs/<prompt>-<method>-<seed>)."),
    method: str = typer.Option("sds", "--method",
                               help="sds (DreamFusion), vsd (ProlificDreamer) or bsd (PlacidDreamer)."),
    prior: Path = typer.Option(None, "--prior", help=(
        "Local diffusers pipeline directory (Stable Diffusion 1.x/2.x, SDXL, DeepFloyd IF stage I, or a prior "
        "trained by tools/train_prior.py); default: the bundled prior in vision3d_kd/assets/prior.")),
    dtype: str = typer.Option(None, "--dtype", help=(
        "The prior's compute precision: fp32 (default), fp16 or bf16 (loads a checkout's fp16 variant files "
        "where present; what trains stays fp32).")),
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
    allow_unknown_words: bool = typer.Option(False, "--allow-unknown-words", help=(
        "With the bundled prior: go on with words it does not know (they become [UNK]) instead of refusing "
        "the prompt; `v3kd prior vocab` lists the words it knows.")),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint "
                                "(with the settings it was started with)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Optimise a 3D student so that its renders from random cameras look like PROMPT to a diffusion prior;
    writes a run directory (weights, config.json, metrics.json, log.jsonl) plus mesh.glb and turntable.mp4."""

    from ..errors import ConfigError
    from ..generation.config import load_generate_config
    from ..generation.lucid import pick_layout
    from ..generation.run import generate_run
    from ..parallel import device_for, dist_env, init_distributed, leave_distributed
    from .common import pick_device

    chosen = pick_layout(layout, layout_from, llm)
    if chosen is None and not (prompt or "").strip():
        raise ConfigError("the prompt is empty: give a PROMPT, or a layout (--layout FILE or --layout-from TEXT)")

    sets = list(overrides)
    for key, value in (("steps", steps), ("particles", particles), ("student", student), ("prior_dtype", dtype)):
        if value is not None:
            sets.append(f"generate.{key}={value}")
    sets.append(f"generate.seed={seed}")
    if negative is not None:
        sets.append(f"guidance.negative_prompt={negative!r}")
    setup = load_generate_config(method, config, sets)
    dist = dist_env()  # under torchrun: one rank of a data-parallel generation (each renders its share of views)
    init_distributed(dist)
    dev = device_for(dist, device) if dist.distributed else pick_device(device)
    out, metrics = generate_run(prompt or "", setup, out, prior, resume=resume, mesh=not no_mesh,
                                video=not no_video, device=dev, show_progress=not quiet and dist.writer, dist=dist,
                                allow_unknown_words=allow_unknown_words, layout=chosen)
    leave_distributed()
    if not dist.writer:
        return
    parts = [f"{metrics['steps']} steps in {metrics['seconds']:.0f} s"]
    if not no_mesh:
        faces = metrics.get("mesh_faces", 0)
        parts.append(f"mesh.glb {faces} faces" if faces else "no mesh (empty)")
    if not no_video:
        parts.append("turntable.mp4")
    if "floater_share_before" in metrics:
        parts.append(f"floaters {100 * metrics['floater_share_before']:.2f} % -> "
                     f"{100 * metrics['floater_share_after']:.2f} % of the opacity")
    if chosen is not None:
        parts.append(f"{len(chosen.objects)} objects (layout in {out / 'layout.json'})")
    for note in metrics.get("prompt_notes", []):
        print(f"prompt: {note}")
    print(f"wrote {out}: " + ", ".join(parts) + f" (total {metrics['total_seconds']:.0f} s)")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
