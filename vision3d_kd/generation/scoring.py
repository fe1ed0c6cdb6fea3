"""Scores of a generated object against the true object of the bundled prior's world (`data.objects`).

- Multi-view: the run and the true object are rendered from the same `n_views` cameras (elevation 15°,
  azimuths evenly spaced, radius 3.5, 64 px, white background; the truth unshaded, i.e. its albedo, as the
  student's renders are); mask IoU of opacity > 0.5, colour error (mean |Δ| of the mean colours inside the
  two masks), mean HSV saturation inside the generated mask, and colour names: each pixel inside both masks
  is named by the world's colour (`data.objects.COLOURS`) nearest to it (Euclidean, linear RGB) in the
  run's and in the truth's render; `colour_agreement` is the share of those pixels whose names agree and
  `colour_correct` whether it is at least one half — colour error alone scores a white object rendered pure
  white (1.0 against the world's 0.90) like a tinted one, and a mean colour hides a house whose roof and
  walls swapped colours.
- Asymmetric part (mug handle, chair back, arrow head, snowman nose: shape; house door, flush with its
  wall: colour): where the part is on the true object and where it would be after rotating the object
  by 90°, 180°, 270° about z. Shape parts: the fraction of points of the part's protruding region
  (inside the part, ≥ 0.03 + δ outside every other primitive) where the run's density exceeds the surface
  level (its opacity-0.5 iso-density, `export.mesh.auto_level`) somewhere within δ = one pixel of the
  64 px scoring views at the object (0.040): a part half a pixel thinner or one pixel off its true place —
  all that 64 px supervision can resolve — is still there (`part_scores`), while the same fraction at
  the points themselves (`part_scores_strict`, margin 0.03; the rule before 2026-11-29) called a chair back
  one pixel thinner than the truth absent. Found: fraction ≥ 0.5. Colour parts: rays looking straight at
  the part's outer surface points; the part is seen when the mean colour of what those rays hit
  (opacity-weighted, so rays through empty space count for nothing rather than as background white) is
  nearer the part's colour than the body's; rays that hit (almost) nothing see no part. `part_sides`
  lists the rotations where the part is found; correct = found at 0° only; Janus = found on ≥ 2 sides.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..cameras import cameras_from_spherical
from ..data.object_views import render_object
from ..data.objects import ASYMMETRIC, COLOURS, ObjectSpec, build_object
from ..data.procedural import Shading
from ..export.mesh import auto_level
from ..export.rig import rig_cameras
from ..metrics import mask_iou, masked_color_error
from ..render.image import render
from ..render.volume import RenderConfig, render_rays_chunked

__all__ = ["score_run", "saturation", "colour_agreement", "render_views_at", "COLOUR_PARTS", "SCORER", "PIXEL"]

COLOUR_PARTS = ("door",)  # the nose protrudes: scored by shape, so a red nose on a red snowman counts
ROTATIONS = (0.0, 90.0, 180.0, 270.0)
SCORER = 2  # version of these rules, kept in each bench score (2: shape parts within one pixel)
ELEVATION, RADIUS, FOV, SIZE = 15.0, 3.5, 40.0, 64
PIXEL = 2.0 * RADIUS * math.tan(math.radians(FOV / 2)) / SIZE  # one scoring pixel at the object (0.040)
MARGIN = 0.03  # a shape part's region keeps this far (+ the tolerance) from every other primitive
ALBEDO = Shading(light_dir=(0.0, 0.0, 1.0), ambient=1.0)  # unshaded truth: the colours a student should learn


def view_cameras(n_views: int):
    az = torch.arange(n_views).float() * (360.0 / n_views)
    full = torch.ones(n_views)
    return cameras_from_spherical(full * ELEVATION, az, full * RADIUS, full * FOV, SIZE, SIZE), az


@torch.no_grad()
def render_views_at(model, grid, settings: RenderConfig, n_views: int) -> tuple[Tensor, Tensor]:
    """rgb [V,3,H,W] on white and opacity [V,H,W] of a run from the scoring cameras."""
    cams, _ = view_cameras(n_views)
    outs = [render(model, cams, i, grid, settings, "white") for i in range(n_views)]
    return (torch.stack([o["rgb"] for o in outs]).permute(0, 3, 1, 2),
            torch.stack([o["opacity"] for o in outs]))


def palette_index(rgb: Tensor) -> Tensor:
    """Index into `COLOURS` of the world colour nearest (Euclidean, linear RGB) to each pixel of rgb [..., 3]."""
    table = torch.tensor(list(COLOURS.values()), dtype=rgb.dtype, device=rgb.device)
    return torch.cdist(rgb.reshape(-1, 3), table).argmin(dim=1).reshape(rgb.shape[:-1])


def colour_agreement(rgb: Tensor, gt_rgb: Tensor, mask: Tensor) -> float:
    """Share of the pixels in mask [V,H,W] where rgb and gt_rgb [V,3,H,W] have the same `palette_index`
    (nan when the mask is empty)."""
    if not mask.any():
        return math.nan
    same = palette_index(rgb.permute(0, 2, 3, 1)) == palette_index(gt_rgb.permute(0, 2, 3, 1))
    return float(same[mask].float().mean())


def saturation(rgb: Tensor, mask: Tensor) -> float:
    """Mean HSV saturation (max − min) / max of rgb [V,3,H,W] over mask [V,H,W] (nan when empty)."""
    mx, mn = rgb.max(dim=1).values, rgb.min(dim=1).values
    s = (mx - mn) / mx.clamp_min(1e-6)
    return float(s[mask].mean()) if mask.any() else float("nan")


def _rotate_z(x: Tensor, deg: float) -> Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return x @ rot.T


def _part_points(scene, spec: ObjectSpec, part: str, n: int, margin: float, generator: torch.Generator
                 ) -> Tensor:
    """Up to n points of the part's protruding region of `scene` = build_object(spec): inside the part and
    more than `margin` outside every other primitive."""
    idx = [i for i, name in enumerate(spec.parts) if name == part]
    others = [p for i, p in enumerate(scene.primitives) if i not in idx]
    pts = (torch.rand(1_000_000, 3, generator=generator) * 2 - 1) * 1.2
    inside = torch.stack([scene.primitives[i].sdf(pts) for i in idx]).min(0).values < 0
    away = torch.stack([p.sdf(pts) for p in others]).min(0).values > margin
    return pts[inside & away][:n]


def _ball_offsets(radius: float) -> Tensor:
    """The centre and 26 directions of the 3×3×3 lattice scaled to length `radius` [27, 3]."""
    g = torch.tensor([-1.0, 0.0, 1.0])
    d = torch.cartesian_prod(g, g, g)
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1.0) * radius


def _shape_scores(model, scene, spec: ObjectSpec, part: str, level: float, tol: float, gen: torch.Generator
                  ) -> list[float]:
    """Per rotation, the fraction of the (rotated) part region where the density exceeds `level` within
    `tol` (27-point ball); rotated copies keep only points more than margin + tol outside the object."""
    margin = MARGIN + tol
    pts = _part_points(scene, spec, part, 2048, margin, gen)
    offsets = _ball_offsets(tol) if tol > 0 else torch.zeros(1, 3)
    scores = []
    for deg in ROTATIONS:
        p = _rotate_z(pts, deg)
        p = p[scene.sdf(p) > margin] if deg else p  # rotated copies: only where the object is not
        if not len(p):
            scores.append(0.0)
            continue
        q = (p[:, None, :] + offsets[None]).reshape(-1, 3)
        sigma = model.density(q.to(model.aabb)).cpu().reshape(len(p), len(offsets))
        scores.append(float((sigma.max(dim=1).values > level).float().mean()))
    return scores


def _surface_rays(scene, spec: ObjectSpec, part: str, n: int, generator: torch.Generator
                  ) -> tuple[Tensor, Tensor]:
    """Origins [K,3] 0.5 outside the part's surface points and directions [K,3] looking straight at them
    (points without a normal, such as the nose cone's apex, are skipped)."""
    pts = scene.surface_points(4 * n, generator)
    _, which = scene.sdf_and_index(pts)
    keep = torch.tensor([spec.parts[int(i)] == part for i in which], dtype=torch.bool)
    pts = pts[keep]
    normals = scene.normal(pts)
    has_normal = normals.norm(dim=-1) > 0.5
    pts, normals = pts[has_normal][:n], normals[has_normal][:n]
    return pts + 0.5 * normals, -normals


@torch.no_grad()
def part_sides(model, grid, settings: RenderConfig, spec: ObjectSpec, level: float, seed: int = 0
               ) -> dict[str, Any]:
    """{part, part_scores [4] (per rotation), part_sides [rotations where found], and the same without the
    one-pixel tolerance: part_scores_strict, part_sides_strict} (module docstring)."""
    part = ASYMMETRIC[spec.family]
    gen = torch.Generator().manual_seed(seed)
    scene = build_object(spec)
    if part in COLOUR_PARTS:
        scores = []
        o, d = _surface_rays(scene, spec, part, 256, gen)
        part_col = torch.tensor(scene.primitives[spec.parts.index(part)].color)
        body_col = torch.tensor(scene.primitives[0].color)
        for deg in ROTATIONS:
            ro, rd = _rotate_z(o, deg), _rotate_z(d, deg)
            res = render_rays_chunked(model, ro.to(model.aabb), rd.to(model.aabb), grid,
                                      torch.zeros(len(ro), 3).to(model.aabb), settings)
            hit = float(res["opacity"].sum())
            if hit < 0.05 * len(ro):
                scores.append(-1.0)  # nothing there
                continue
            c = res["rgb"].cpu().sum(0) / hit  # black background: rgb is premultiplied by opacity
            scores.append(float((c - body_col).norm() - (c - part_col).norm()))  # > 0: nearer the part
        strict = scores  # no tolerance to drop

        def found(s: float) -> bool:
            return s > 0  # nearer the part colour than the body's
    else:
        scores = _shape_scores(model, scene, spec, part, level, PIXEL, gen)
        strict = _shape_scores(model, scene, spec, part, level, 0.0, gen)

        def found(s: float) -> bool:
            return s >= 0.5
    return {"part": part, "part_scores": scores,
            "part_sides": [d for d, s in zip(ROTATIONS, scores, strict=True) if found(s)],
            "part_scores_strict": strict,
            "part_sides_strict": [d for d, s in zip(ROTATIONS, strict, strict=True) if found(s)]}


def score_run(model, grid, settings: RenderConfig, render_cfg: dict[str, Any], spec: ObjectSpec,
              n_views: int = 8) -> dict[str, Any]:
    """All scores of one generated run against spec (see the module docstring) plus its renders
    (`rgb` [V,3,H,W], for diversity)."""
    rgb, opacity = render_views_at(model, grid, settings, n_views)
    _, az = view_cameras(n_views)
    full = torch.ones(n_views)
    gt = render_object(spec, full * ELEVATION, az, full * RADIUS, SIZE, shading=ALBEDO)
    m_pred, m_true = opacity > 0.5, gt["alpha"] > 0.5
    gt_rgb = gt["rgb"].permute(0, 3, 1, 2)
    ious = [mask_iou(m_pred[i], m_true[i]) for i in range(n_views)]
    cerr = [masked_color_error(rgb[i], gt_rgb[i], m_pred[i], m_true[i]) for i in range(n_views)]
    out: dict[str, Any] = {"iou": sum(ious) / n_views, "colour_error": sum(cerr) / n_views,
                           "saturation": saturation(rgb, m_pred), "rgb": rgb,
                           "colour_agreement": colour_agreement(rgb, gt_rgb, m_pred & m_true)}
    out["colour_correct"] = out["colour_agreement"] >= 0.5
    if spec.family in ASYMMETRIC and getattr(model, "name", "") != "splats":
        level = auto_level(model, grid, settings, rig_cameras(render_cfg, 16, size=64))
        sides = part_sides(model, grid, settings, spec, level)
        out.update(sides, part_correct=sides["part_sides"] == [0.0], janus=len(sides["part_sides"]) >= 2,
                   part_correct_strict=sides["part_sides_strict"] == [0.0],
                   janus_strict=len(sides["part_sides_strict"]) >= 2)
    return out
