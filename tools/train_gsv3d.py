"""Make the bundled GSV3D models: an orbit data set, the multi-view generator (fine-tuned from the bundled
prior), the Gaussian decoder, and the geometric-distillation LoRA; each written to vision3d_kd/assets/.

    python tools/train_gsv3d.py data --out ~/gsv3d/data --objects 2000 [--worker 0/2]
    python tools/train_gsv3d.py generator --data ~/gsv3d/data --work ~/gsv3d/generator [--init GENERATOR_DIR]
    python tools/train_gsv3d.py decoder --data ~/gsv3d/data --work ~/gsv3d/decoder
    python tools/train_gsv3d.py samples --data ~/gsv3d/data --out ~/gsv3d/samples --objects 400 [--worker 0/2]
    python tools/train_gsv3d.py decoder --data ~/gsv3d/data --work ~/gsv3d/decoder2 --init DECODER_DIR \
        --samples ~/gsv3d/samples --generated 0.5          # the decoder on the generator's own rings
    python tools/train_gsv3d.py lora --data ~/gsv3d/data --work ~/gsv3d/lora [--samples ~/gsv3d/samples --on-policy 0.5]

Training runs are resumable: rerunning the same command continues from the last checkpoint in --work
(--steps may grow). When a run ends its result is exported to --out (default: the bundled asset folder) with a
TRAINING.md saying how it was made; --export-only exports the latest checkpoint without training."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision3d_kd.assets import default_prior_path  # noqa: E402
from vision3d_kd.data.object_orbits import write_orbit_dataset  # noqa: E402
from vision3d_kd.distill.gsv3d import decoder as dec  # noqa: E402
from vision3d_kd.distill.gsv3d import generator as gen  # noqa: E402
from vision3d_kd.distill.gsv3d import geometric as geo  # noqa: E402
from vision3d_kd.distill.gsv3d import train as tr  # noqa: E402
from vision3d_kd.distill.gsv3d.sample_set import write_sample_set  # noqa: E402

CONFIGS = {"generator": tr.GeneratorTrainConfig, "decoder": tr.DecoderTrainConfig, "lora": geo.LoraTrainConfig}
OUTS = {"generator": gen.default_generator_path(), "decoder": dec.default_decoder_path(),
        "lora": geo.default_lora_path()}


def _add_config(ap: argparse.ArgumentParser, cls) -> None:
    for f in dataclasses.fields(cls):
        if f.name == "decoder":
            continue
        default = getattr(cls(), f.name)
        if isinstance(default, bool):
            ap.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                            default=default, help=f"(default {default})")
            continue
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(default), default=default,
                        choices=getattr(cls, "CHOICES", {}).get(f.name),
                        help=f.metadata.get("help", f"(default {default})"))


def _worker(text: str) -> tuple[int, int]:
    """(k, n) of a --worker K/N."""
    k, n = text.split("/")
    return int(k), int(n)


def _provenance(out: Path, work: Path, what: str) -> None:
    """out/TRAINING.md: the commands (each start or resume), the run's settings and last log line, the commit."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=root).stdout.strip()
    log = (work / "log.jsonl").read_text().splitlines() if (work / "log.jsonl").is_file() else ["(none)"]
    commands = (work / "commands.txt").read_text() if (work / "commands.txt").is_file() else "(not recorded)\n"
    config = json.loads((work / "config.json").read_text())
    (out / "TRAINING.md").write_text(
        f"# Bundled GSV3D {what}\n\nExported from `{work}` at step {config.get('steps_done')}; commit "
        f"{commit or 'unknown'}.\n\nCommands (each start or resume):\n```\n{commands}```\nRun config:\n```\n"
        f"{json.dumps(config, indent=1)}\n```\nLast log line:\n```\n{log[-1]}\n```\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="render an orbit training set")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--objects", type=int, default=2000)
    d.add_argument("--ring", type=int, default=16)
    d.add_argument("--novel", type=int, default=4)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--worker", default="0/1", help="K/N: render shards s with s %% N == K")
    s = sub.add_parser("samples", help="sample the generator's rings of an orbit set's first objects")
    s.add_argument("--data", type=Path, required=True, help="orbit set from `data`")
    s.add_argument("--out", type=Path, required=True, help="sample set folder (resumed if it exists)")
    s.add_argument("--generator", type=Path, default=None, help="generator folder (default: the bundled one)")
    s.add_argument("--objects", type=int, default=400, help="how many of the set's first objects (default 400)")
    s.add_argument("--steps", type=int, default=30, help="DDIM steps (as image-to-3d)")
    s.add_argument("--guidance", type=float, default=gen.DEFAULT_GUIDANCE, help="guidance scale (as image-to-3d)")
    s.add_argument("--seed", type=int, default=0, help="object i is sampled with seed SEED+i")
    s.add_argument("--average", type=int, default=1,
                   help="store the mean of K rings per object, as image-to-3d --average K decodes (default 1)")
    s.add_argument("--worker", default="0/1", help="K/N: sample objects i with i %% N == K")
    for name, cls in CONFIGS.items():
        p = sub.add_parser(name, help=f"train the {name}")
        p.add_argument("--data", type=Path, help="orbit set from `data`")
        p.add_argument("--work", type=Path, required=True, help="training run folder (resumed if it exists)")
        p.add_argument("--out", type=Path, default=OUTS[name], help="asset folder to export to")
        p.add_argument("--prior", type=Path, default=default_prior_path(None))
        p.add_argument("--generator", type=Path, default=None, help="generator folder (default: the bundled one)")
        p.add_argument("--decoder", type=Path, default=None, help="decoder folder (default: the bundled one)")
        if name in ("generator", "decoder"):
            p.add_argument("--init", type=Path, default=None,
                           help=f"start from this {name} folder (e.g. the bundled one) instead of "
                                f"{'the prior' if name == 'generator' else 'scratch'}")
        if name == "decoder":
            p.add_argument("--decoder-depth", type=int, default=dec.DecoderConfig().depth,
                           help="transformer blocks (default %(default)s); more than --init's adds blocks that start "
                                "as identities")
        if name in ("decoder", "lora"):
            rate = "--generated" if name == "decoder" else "--on-policy"
            p.add_argument("--samples", type=Path, default=None,
                           help=f"sample set from `samples` (made by --generator) to train on at {rate}")
        p.add_argument("--export-only", action="store_true")
        _add_config(p, cls)
    args = ap.parse_args()
    if args.cmd == "data":
        write_orbit_dataset(args.out, args.objects, args.ring, args.novel, seed=args.seed, worker=_worker(args.worker),
                            progress=lambda i, t: print(f"\r{i}/{t}", end="", flush=True))
        print()
        return
    if args.cmd == "samples":
        write_sample_set(args.data, gen.load_generator(args.generator), str(args.generator or "bundled"), args.out,
                         args.objects, args.steps, args.guidance, args.seed, _worker(args.worker),
                         average=args.average, progress=lambda i, t: print(f"\r{i}/{t}", end="", flush=True))
        print(f"\nwrote {args.out}")
        return
    fields = {f.name for f in dataclasses.fields(CONFIGS[args.cmd])} - {"decoder"}
    cfg = CONFIGS[args.cmd](**{k: getattr(args, k) for k in fields})
    if args.cmd == "decoder":
        cfg.decoder = dec.DecoderConfig(depth=args.decoder_depth)
    if not args.export_only:
        if args.data is None:
            ap.error("--data is required unless --export-only")
        args.work.mkdir(parents=True, exist_ok=True)
        with (args.work / "commands.txt").open("a") as f:
            f.write("python " + " ".join(sys.argv) + "\n")
        resume = (args.work / "weights.safetensors").is_file()
        _train(args, cfg, resume)
    _export(args)
    _provenance(args.out, args.work, args.cmd)
    print(f"wrote {args.out}")


def _train(args, cfg, resume: bool) -> None:
    if args.cmd == "generator":
        tr.train_generator(args.data, args.work, cfg, args.prior, resume=resume, init=args.init)
    elif args.cmd == "decoder":
        tr.train_decoder(args.data, args.work, cfg, gen.load_generator(args.generator), str(args.generator or
                         "bundled"), resume=resume, init=args.init, samples=args.samples)
    else:
        names = {"generator": str(args.generator or "bundled"), "decoder": str(args.decoder or "bundled")}
        geo.train_lora(args.data, args.work, cfg, gen.load_generator(args.generator), dec.load_decoder(args.decoder),
                       names, resume=resume, samples=args.samples)


def _export(args) -> None:
    if args.cmd == "generator":
        tr.export_generator(args.work, args.prior, args.out)
    elif args.cmd == "decoder":
        tr.export_decoder(args.work, args.out)
    else:
        geo.export_lora(args.work, gen.load_generator(args.generator), args.out)


if __name__ == "__main__":
    main()
