"""Render the bundled prior's training set: random objects of the procedural world (data/objects.py;
HELD_OUT colour/shape pairs excluded), several random text-to-3D views each, 64×64 on white.

    python tools/make_prior_data.py --out ~/.cache/vision3d_kd/prior_data --images 24576 --seed 0

Resumable (complete shards are kept); the same --images/--views/--size/--seed give the same images."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from vision3d_kd.data.object_views import add_part_masks, write_prior_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="data set folder (created; resumed if it exists)")
    ap.add_argument("--images", type=int, default=24576, help="number of images")
    ap.add_argument("--views", type=int, default=8, help="views per object")
    ap.add_argument("--size", type=int, default=64, help="image width and height in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (sphere tracing gains little)")
    ap.add_argument("--worker", default="0/1", help="K/N: render only shards s with s %% N == K (run N of these)")
    ap.add_argument("--part-masks", action="store_true",
                    help="only add the missing parts_NNNN.npy of an existing --out (data sets made before them)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - t0, 1e-9)
        print(f"\r{done}/{total} images ({rate:.1f}/s)", end="", flush=True)

    if args.part_masks:
        add_part_masks(args.out, progress)
        print(f"\nadded part masks to {args.out} in {time.perf_counter() - t0:.0f} s")
        return
    k, n = (int(v) for v in args.worker.split("/"))
    write_prior_dataset(args.out, args.images, args.views, args.size, args.seed, progress=progress, worker=(k, n))
    print(f"\nwrote {args.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
