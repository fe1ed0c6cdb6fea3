"""The `v3kd` command: one typer app; each verb lives in its own module."""

from __future__ import annotations

import functools
import sys

import typer

from ..errors import V3KDError
from ..kernels.pool import keep_heap_memory

__all__ = ["app", "main"]

app = typer.Typer(
    name="v3kd",
    help="vision3d_kd: fit, distil, render and export 3D students on CPU or GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@functools.cache
def _register() -> None:
    """Add every verb to `app`, once (cached): a second call would add each command again, and typer rebuilds
    the whole command tree on every invocation (in-process callers such as the tests slowed down call after call)."""
    from . import (
        batch,
        bench,
        bench_event_vggt,
        bench_gsv3d,
        bench_lucid,
        bench_scale,
        convert,
        data,
        eval,
        event_depth,
        export,
        fit,
        generate,
        image_to_3d,
        prior,
        render,
        view,
    )

    del bench_event_vggt, bench_lucid, bench_gsv3d, bench_scale  # imported for their side effect: bench verbs

    fit.register(app)
    batch.register(app)
    convert.register(app)
    generate.register(app)
    image_to_3d.register(app)
    eval.register(app)
    render.register(app)
    export.register(app)
    view.register(app)
    app.add_typer(bench.bench_app, name="bench")
    app.add_typer(data.data_app, name="data")
    app.add_typer(prior.prior_app, name="prior")
    app.add_typer(event_depth.event_app, name="event-depth")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line `error: ...` on stderr and exit with status 2."""
    keep_heap_memory()  # a training step's tensors reuse the last step's memory (kernels/pool.py)
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except V3KDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted (last checkpoint kept; continue with --resume)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
