"""The 3D students score distillation optimises: a radiance field wrapped in `BlobField` (density blob,
progressive hash levels, occupancy-grid marching, shading augmentation) or Gaussian splats (initialised
in the blob's ball; albedo only, no normals). Both render one camera to rgb [H,W,3] on white and save
as ordinary run directories (so `v3kd export/render/view` work on the result).

With a layout's `boxes` (LucidDreaming; [K,6] world xmin..zmax) a field gets one blob per box and splats
start in each box's blob; `render(..., clip=box)` then shows only what is inside that box: clipped rays
for a field, for splats the Gaussians whose centre is in it (so only they get that object's gradient)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..cameras import Cameras, image_rays
from ..checkpoint import WEIGHTS, load_tensors, save_tensors
from ..fields import BlobField, GaussianSplats, build_field
from ..fields.base import box_scales
from ..fields.placed import SplatView, splat_view
from ..fields.splats import rgb_to_sh_dc
from ..render.occupancy import OccupancyGrid, density_for_opacity
from ..render.shading import Shader
from ..render.splat import render_splats
from ..render.volume import RenderConfig, render_rays
from ..runs import OCCUPANCY, save_field
from ..train.optim import make_optimizer
from .config import GenerationConfig

__all__ = ["FieldStudent", "SplatStudent", "build_student"]

WHITE = (1.0, 1.0, 1.0)


class FieldStudent:
    """A BlobField over the method's field family (see the module docstring)."""

    def __init__(self, setup: GenerationConfig, device: torch.device, boxes: list[list[float]] | None = None) -> None:
        g = setup.generate
        box = [[-g.aabb] * 3, [g.aabb] * 3]
        inner = {**setup.field, "field": g.student, "aabb": box}
        self.model = BlobField(inner=inner, blob_density=g.blob_density, blob_radius=g.blob_radius,
                               start_levels=g.start_levels, boxes=list(boxes or []), box_ratio=g.box_blob_ratio,
                               empty_outside=bool(setup.field.get("box_tables")),
                               scale_box_density=bool(boxes) and (g.box_blob_scaled or g.box_blob_relative),
                               box_density_largest=g.box_blob_relative).to(device)
        self.grid = OccupancyGrid(self.model.aabb.cpu(), g.occ_resolution, contract=self.model.contract).to(device)
        self.settings = RenderConfig(step_size=g.step_size, opacity_min=g.opacity_min or 0.0,
                                     shade_weight_min=g.shade_weight_min or 0.0)
        self.density_thr = density_for_opacity(0.01, g.step_size)
        # generate.box_steps: an object's clipped rays marched at min(s_k, 1) / min(s_min, 1) times the step (the
        # layout's step is a lone object's times min(s_min, 1)), i.e. at its own lone step in its object frame;
        # generate.box_own_scale: that, and its normals' finite differences at that ratio too
        own = bool(boxes) and (g.box_steps or g.box_own_scale)
        self.smallest = min(float(box_scales(boxes).min()), 1.0) if own else None
        self.own_fd = bool(boxes) and g.box_own_scale
        self.optimizer = make_optimizer(self.model, g.lr)
        self.cfg = g

    def before_step(self, step: int, progress: float, generator: torch.Generator) -> None:
        """Unlock hash levels; refresh the occupancy grid every occ_update_every steps."""
        self.model.set_progress(progress)
        if step % self.cfg.occ_update_every == 0:
            self.grid.update(self.model.density, self.density_thr, warmup=step < 64, generator=generator)

    def render(self, cams: Cameras, i: int, shader: Shader | None, generator: torch.Generator,
               clip: Tensor | None = None) -> dict[str, Tensor]:
        """rgb [H,W,3], opacity [H,W], the orientation penalty (scalar) and, when the shader asks for it, the
        colour-smoothness one ("albedo_smooth", scalar) of camera i (rays clipped to the box `clip` [2,3] when
        given)."""
        o, d = image_rays(cams, i)
        bg = torch.tensor(WHITE, device=o.device).expand(o.shape[0], 3)
        if shader is not None:
            shader.field = self.model
        settings = self.settings
        if clip is not None and self.smallest is not None:
            k = min(float(box_scales(clip.reshape(1, 6).tolist())[0]), 1.0) / self.smallest
            settings = dataclasses.replace(settings, step_size=settings.step_size * k)
            if self.own_fd and shader is not None:
                shader = dataclasses.replace(shader, fd_step=shader.fd_step * k, smooth_step=shader.smooth_step * k)
        res = render_rays(self.model, o, d, self.grid, bg, settings, jitter=True, generator=generator,
                          shader=shader, clip=None if clip is None else clip.to(o.device))
        h, w = cams.height, cams.width
        return {"rgb": res["rgb"].reshape(h, w, 3), "opacity": res["opacity"].reshape(h, w),
                "orientation": res.get("orientation", res["rgb"].sum() * 0.0),
                **({"albedo_smooth": res["albedo_smooth"]} if "albedo_smooth" in res else {})}

    def save(self, run: Path, extra: dict[str, Any]) -> None:
        save_field(run, self.model, extra)
        save_tensors(run / OCCUPANCY, self.grid.state_dict())

    def load(self, run: Path) -> None:
        tensors = load_tensors(run / WEIGHTS)
        self.model.load_state_dict(tensors)
        self.grid.load_state_dict(load_tensors(run / OCCUPANCY))


class SplatStudent:
    """Gaussian splats (SH degree 0) started as `splats` small grey Gaussians in the blob ball (or, with
    boxes, an equal share in each box's blob ellipsoid, sized to its object)."""

    def __init__(self, setup: GenerationConfig, device: torch.device, generator: torch.Generator,
                 boxes: list[list[float]] | None = None) -> None:
        g = setup.generate
        n = g.splats
        dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=-1)
        r = g.blob_radius * torch.rand(n, 1, generator=generator) ** (1 / 3)
        centre, spread = torch.zeros(n, 3), torch.ones(n, 3)  # per Gaussian: its blob's centre and axes
        if boxes:
            b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6)
            which = torch.arange(n) % len(b)
            centre, spread = 0.5 * (b[which, :3] + b[which, 3:]), g.box_blob_ratio * (b[which, 3:] - b[which, :3])
        self.model = GaussianSplats(aabb=[[-g.aabb] * 3, [g.aabb] * 3], n=n, sh_degree=0)
        with torch.no_grad():
            self.model.means.copy_(centre + dirs * r * spread)
            self.model.log_scales.copy_(torch.log(g.blob_radius * 0.08 * spread.min(dim=1, keepdim=True).values
                                                  ).expand(n, 3))
            self.model.opacity_logits.fill_(-1.0)
            self.model.sh_dc.copy_(rgb_to_sh_dc(torch.full((n, 3), 0.6))[:, None])
        self.model = self.model.to(device)
        lr = g.lr
        groups = [{"params": [self.model.means], "lr": lr * 0.1}, {"params": [self.model.log_scales], "lr": lr * 0.5},
                  {"params": [self.model.quats], "lr": lr * 0.1}, {"params": [self.model.opacity_logits], "lr": lr * 5},
                  {"params": [self.model.sh_dc], "lr": lr * 0.25}]
        self.optimizer = torch.optim.Adam(groups, eps=1e-15)
        self.grid = None

    def before_step(self, step: int, progress: float, generator: torch.Generator) -> None:
        return None

    def render(self, cams: Cameras, i: int, shader: Shader | None, generator: torch.Generator,
               clip: Tensor | None = None) -> dict[str, Tensor]:
        """Splats are not shaded; a shader's `albedo_scale` (the gray proxy) scales their composited colour."""
        model = self.model if clip is None else splat_view(self.model, clip)
        if shader is not None and shader.albedo_scale is not None and shader.freeze_albedo:  # colours: no gradient
            model = SplatView(model.means, model.quats, model.scales, model.opacities, model.sh.detach(),
                              model.active_sh_degree, model.aabb)
        bg = torch.tensor(WHITE, device=self.model.means.device)
        out = render_splats(model, cams[i], background=bg)
        rgb = out["rgb"]
        if shader is not None and shader.albedo_scale is not None:  # colour and background composite linearly
            behind = (1.0 - out["opacity"])[..., None] * bg
            rgb = (rgb - behind) * shader.albedo_scale.to(rgb) + behind
        return {"rgb": rgb, "opacity": out["opacity"], "orientation": out["rgb"].sum() * 0.0}

    def save(self, run: Path, extra: dict[str, Any]) -> None:
        save_field(run, self.model, extra)

    def load(self, run: Path) -> None:
        self.model.load_state_dict(load_tensors(run / WEIGHTS))


def build_student(setup: GenerationConfig, device: torch.device, generator: torch.Generator,
                  boxes: list[list[float]] | None = None):
    """The student named by setup.generate.student (splats or any field family); `boxes`: a layout's."""
    if setup.generate.student == "splats":
        return SplatStudent(setup, device, generator, boxes)
    build_field({**setup.field, "field": setup.generate.student})  # fail early on a bad name / option
    return FieldStudent(setup, device, boxes)
