"""Train the bundled prior (VAE, then latent UNet + text encoder) on a data set from make_prior_data.py
and write it as a diffusers pipeline directory.

    python tools/train_prior.py --data ~/.cache/vision3d_kd/prior_data --work ~/.cache/vision3d_kd/prior_work \
        --out vision3d_kd/assets/prior --seed 0

Checkpoints go to --work every --checkpoint-every steps; rerunning the same command resumes. The exported
UNet and text encoder are the EMA weights. Log lines: stage, step, loss, seconds.

Data-parallel on several processes, GPUs or hosts (the same batch as one process, shared out; rank 0 writes):

    torchrun --nproc_per_node 2 tools/train_prior.py --data ... --work ... --out ..."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision3d_kd.data.object_views import load_part_masks, load_prior_shards  # noqa: E402
from vision3d_kd.guidance.prior_training import PriorTrainConfig, export_checkpoint, train_prior  # noqa: E402
from vision3d_kd.parallel import dist_env, init_distributed, leave_distributed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path,
                    help="data set folder from make_prior_data.py (with --export-only: only named in TRAINING.md)")
    ap.add_argument("--work", type=Path, required=True, help="checkpoint folder (resumed if it exists)")
    ap.add_argument("--out", type=Path, default=Path("vision3d_kd/assets/prior"))
    ap.add_argument("--export-only", action="store_true",
                    help="write --out from the latest checkpoints in --work and exit (training may be running)")
    defaults = PriorTrainConfig()
    for key, value in vars(defaults).items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    args = ap.parse_args()
    cfg = PriorTrainConfig(**{k: getattr(args, k) for k in vars(defaults)})
    if args.export_only:
        out, step = export_checkpoint(args.work, args.out)
        _provenance(out, args.work, step, args.data)
        print(f"wrote {out} (UNet EMA at step {step})")
        return
    if args.data is None:
        ap.error("--data is required unless --export-only")
    dist = dist_env()
    init_distributed(dist)
    images, meta = load_prior_shards(args.data)
    log_path = args.work / "log.jsonl"
    if dist.writer:
        print(f"{len(images)} images from {args.data}" + (f", {dist.world_size} ranks" if dist.distributed else ""),
              flush=True)
        args.work.mkdir(parents=True, exist_ok=True)
        with (args.work / "commands.txt").open("a") as f:  # every (re)start, for TRAINING.md
            f.write("python " + " ".join(sys.argv) + "\n")

    def log(stage: str, step: int, rec: dict) -> None:
        line = json.dumps({"stage": stage, "step": step, **rec})
        print(line, flush=True)
        with log_path.open("a") as f:
            f.write(line + "\n")

    masks = load_part_masks(args.data) if cfg.part_weight > 0 else None
    out = train_prior(images, meta, args.work, args.out, cfg, log, masks, dist)
    leave_distributed()
    if dist.writer:
        _provenance(out, args.work, cfg.unet_steps, args.data)
        print(f"wrote {out}")


def _provenance(out: Path, work: Path, step: int, data: Path | None = None) -> None:
    """out/TRAINING.md: how this prior was made (command, config, data settings, last log lines, commit)."""
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.strip() or "unknown"
    log = (work / "log.jsonl").read_text().splitlines() if (work / "log.jsonl").is_file() else []
    last = {json.loads(x)["stage"]: x for x in log}
    info = (data / "info.json").read_text() if data and (data / "info.json").is_file() else "(see make_prior_data)"
    runs = (work / "commands.txt").read_text() if (work / "commands.txt").is_file() else "(not recorded)\n"
    config = (work / "config.json").read_text()
    text = (f"# Bundled prior\n\nUNet EMA weights at step {step}. Commit {commit}.\n\n"
            f"Training commands (each start or resume):\n```\n{runs}```\n"
            f"Written by: `python {' '.join(sys.argv)}`\n\nConfig (work/config.json):\n```\n"
            f"{config}\n```\nData settings (info.json):\n```\n{info}\n```\n"
            "Last log lines:\n```\n" + "\n".join(last.values()) + "\n```\n")
    init = json.loads(config).get("init_from", "")
    before = Path(init) / "TRAINING.md" if init else None
    if before is not None and before.is_file():  # a fine-tune: the history of what it started from
        lines = before.read_text().splitlines()[1:]  # its headings one level down, its title replaced
        text += f"\n## Started from `--init-from {init}`, made as follows\n" + "\n".join(
            "#" + x if x.startswith("#") else x for x in lines) + "\n"
    (out / "TRAINING.md").write_text(text)


if __name__ == "__main__":
    main()
