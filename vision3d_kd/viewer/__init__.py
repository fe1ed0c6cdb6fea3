"""Local web viewer of runs (viser), tested in headless Chromium."""

from .server import SHOW, splat_arrays, start_viewer

__all__ = ["SHOW", "splat_arrays", "start_viewer"]
