"""EventVGGT losses. Depths enter as log depth (natural log of metres) [B,S,H,W].

- scale-invariant log loss (Eigen et al.) to a target depth (teacher output, or ground truth for the
  upper bound);
- STFD: student tokens, projected to the teacher's width, match the teacher's spatio-temporal tokens
  (layer-normalised) by MSE + cosine at several layers;
- CMFM: a random per-token mixture of student tokens and (projected) teacher tokens is carried through
  the rest of the student and decoded to an auxiliary depth, which must match the teacher's;
- TCD: the student's frame-to-frame change of log depth matches the teacher's (L1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .clips import SKY_DEPTH

__all__ = ["depth_target", "si_log_loss", "confidence_loss", "match_grid", "TokenProjector", "stfd_loss",
           "stfd_relation_loss", "mix_tokens", "tcd_loss"]


def depth_target(depth: Tensor) -> Tensor:
    """Log-depth target [..] from ground truth in metres: sky (0 / non-finite) counts as SKY_DEPTH."""
    ok = torch.isfinite(depth) & (depth > 0)
    return torch.where(ok, depth, torch.full_like(depth, SKY_DEPTH)).clamp(0.1, SKY_DEPTH).log()


def si_log_loss(log_pred: Tensor, log_target: Tensor, lam: float = 0.85, mask: Tensor | None = None) -> Tensor:
    """sqrt(mean d^2 - lam (mean d)^2) per image with d = log_pred - log_target, averaged over images
    [B,S,H,W] -> scalar. lam = 1 is fully scale invariant; lam = 0 is the log RMSE."""
    d = (log_pred - log_target).flatten(2)
    m = torch.ones_like(d) if mask is None else mask.flatten(2).to(d)
    n = m.sum(-1).clamp_min(1.0)
    mean = (d * m).sum(-1) / n
    var = (d * d * m).sum(-1) / n - lam * mean**2
    return var.clamp_min(1e-8).sqrt().mean()


def confidence_loss(conf: Tensor, log_pred: Tensor, log_target: Tensor, alpha: float = 0.2) -> Tensor:
    """VGGT-style aleatoric term mean(c |d| - alpha log c) with the error d detached: trains the
    confidence c >= 1 to be high where the depth error is small."""
    return (conf * (log_pred - log_target).detach().abs() - alpha * conf.log()).mean()


def match_grid(tokens: Tensor, grid: tuple[int, int], target: tuple[int, int]) -> Tensor:
    """Resample tokens [B,S,P,D] on grid (h, w) to the target grid by area averaging / bilinear."""
    if tuple(grid) == tuple(target):
        return tokens
    b, s, p, d = tokens.shape
    m = tokens.reshape(b * s, grid[0], grid[1], d).permute(0, 3, 1, 2)
    m = F.adaptive_avg_pool2d(m, target) if grid[0] >= target[0] else F.interpolate(m, size=target, mode="bilinear")
    return m.permute(0, 2, 3, 1).reshape(b, s, target[0] * target[1], d)


class TokenProjector(nn.Module):
    """One linear map per distilled layer: student width -> teacher width (STFD), and one for the CMFM
    layer: teacher width -> student width."""

    def __init__(self, student_dim: int, teacher_dim: int, layers: int) -> None:
        super().__init__()
        self.to_teacher = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in range(layers))
        self.to_student = nn.Linear(teacher_dim, student_dim)


def stfd_loss(student: list[Tensor], teacher: list[Tensor], proj: TokenProjector) -> Tensor:
    """Mean over layers of MSE + (1 - cosine) between projected student tokens and the teacher's
    layer-normalised tokens (both [B,S,P,D] on the same grid)."""
    total = student[0].new_zeros(())
    for k, (s, t) in enumerate(zip(student, teacher, strict=True)):
        t = F.layer_norm(t, t.shape[-1:])
        ps = proj.to_teacher[k](s)
        total = total + F.mse_loss(ps, t) + (1 - F.cosine_similarity(ps, t, dim=-1)).mean()
    return total / len(student)


def stfd_relation_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Relational STFD: mean over layers of the MSE between the student's and the teacher's spatio-temporal
    affinity matrices (cosine similarity of every pair of tokens of a clip, [B, S*P, S*P]); independent of
    each modality's feature basis, so the student is not pushed to reproduce appearance it cannot see."""
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher, strict=True):
        fs = F.normalize(s.flatten(1, 2), dim=-1)
        ft = F.normalize(t.flatten(1, 2), dim=-1)
        total = total + F.mse_loss(fs @ fs.transpose(1, 2), ft @ ft.transpose(1, 2))
    return total / len(student)


def mix_tokens(student: Tensor, teacher_in_student: Tensor, ratio: float, generator: torch.Generator) -> Tensor:
    """Per-token mixture [B,S,P,D]: each token is the teacher's with probability ``ratio``."""
    b, s, p, _ = student.shape
    pick = torch.rand(b, s, p, 1, generator=generator, device=student.device) < ratio
    return torch.where(pick, teacher_in_student, student)


def tcd_loss(log_student: Tensor, log_teacher: Tensor) -> Tensor:
    """mean |(log D_s[k+1] - log D_s[k]) - (log D_t[k+1] - log D_t[k])| over adjacent frames [B,S,H,W]."""
    ds = log_student[:, 1:] - log_student[:, :-1]
    dt = log_teacher[:, 1:] - log_teacher[:, :-1]
    return (ds - dt).abs().mean()
