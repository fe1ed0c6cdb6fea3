"""Rendering: `render(model, cams, ...)` for fields and splats alike; samples along rays (shared by
rendering, PVD and mesh extraction), the occupancy grid, compositing, shading, splat projection."""

from .image import render

__all__ = ["render"]
