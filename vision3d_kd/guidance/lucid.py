"""LucidDreaming (arXiv 2312.00588): one score-distillation term per object of a layout, on clipped rays.

Each step every object gets the step's random camera moved to orbit its box centre, its distance times the
object's scale (so the object fills the view as a lone object fills the prior's images: the paper's code
only moves the camera, which suits its 512³-canvas boxes and large priors, not a 64 px prior), rays
clipped to its box (nothing outside it is sampled, so other objects neither show nor occlude) and its own
prompt; the terms are summed with weight 1, as in the paper's code. The prior is conditioned on the
camera's angles and its unscaled distance: what the object looks like from there.

The optional whole-scene pass (`harmonise` > 0) adds, for the last `harmonise` fraction of the run, one
more term: a camera orbiting the centre of all boxes at the distance that frames them, rays clipped to
their union, the scene's sentence as prompt and the timestep at most `harmonise_t_max` (as the paper's
`global_guidance_start`: small-noise refinement of the composition, not a new layout).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..cameras import Cameras, RandomCameraSampler, cameras_from_spherical
from ..data.layout import Layout
from .prior import DiffusionPrior
from .prompts import ViewPrompts

__all__ = ["Target", "layout_targets", "whole_target"]


@dataclass
class Target:
    """One score-distillation term: its prompts, the point its cameras orbit (world), the factor on their
    distance, the box its rays are clipped to ([2,3] world; None: not clipped), the progress from which it
    is active, its timestep cap (fraction of T; None: the schedule's) and, for a white object, the prompts of
    its gray proxy (`white_proxy`; None: none)."""

    prompts: ViewPrompts
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    box: Tensor | None = None
    start: float = 0.0
    t_max: float | None = None
    name: str = ""
    proxy: ViewPrompts | None = None

    def cameras(self, sampler: RandomCameraSampler, params: dict[str, Tensor]) -> Cameras:
        """The step's cameras (`sampler.sample_params`) moved to orbit `centre` at `scale` times their distance."""
        return cameras_from_spherical(params["elevation_deg"], params["azimuth_deg"], params["radius"] * self.scale,
                                      params["fov_y_deg"], sampler.width, sampler.height, self.centre, sampler.up)

    def active(self, progress: float) -> bool:
        return progress >= self.start


def layout_targets(prior: DiffusionPrior, layout: Layout, prompts_said: list[str], negative: str | None,
                   view_dependent: bool = True) -> list[Target]:
    """One target per object of `layout`; `prompts_said[k]`: what the prior is told for object k (its own
    caption for the bundled prior, else the object's prompt)."""
    cache: dict[str, ViewPrompts] = {}
    out = []
    for k, (obj, said) in enumerate(zip(layout.objects, prompts_said, strict=True)):
        if said not in cache:  # repeated objects (three oranges) share their embeddings
            cache[said] = ViewPrompts(prior, said, negative, view_dependent)
        out.append(Target(cache[said], obj.centre, obj.scale, obj.aabb(), name=f"object {k}"))
    return out


def whole_target(prior: DiffusionPrior, layout: Layout, said: str, negative: str | None, start: float,
                 t_max: float, view_dependent: bool = True) -> Target:
    """The whole-scene term (module docstring): all boxes' union, orbited from its centre at the scale of
    its longest half-side, active from progress `start`, timesteps at most `t_max`."""
    box = layout.union()
    return Target(ViewPrompts(prior, said, negative, view_dependent), box.centre, layout.span_scale(), box.aabb(),
                  start, t_max, "scene")
