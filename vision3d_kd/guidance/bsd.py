"""Balanced Score Distillation (PlacidDreamer): the classifier direction g_c = λ (ε_c − ε_∅) and the
smoothing (denoising) direction g_d = ε_∅ are combined at the point of their segment nearest the
origin (two-objective minimum-norm solution),

    α = clamp(⟨g_d − g_c, g_d⟩ / ‖g_d − g_c‖², 0, 1) per sample,   g = √ᾱ_t (α g_c + (1 − α) g_d).

λ (`bsd_lambda`, paper 15–18) trades saturation (large λ) for smoothness; PlacidDreamer also uses
offset noise and shrinks t_max from 0.98 to 0.5 after a warm-up (see configs/generate/bsd.yaml).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .sds import ScoreDistillation

__all__ = ["BSD", "balanced_direction"]


def balanced_direction(g_c: Tensor, g_d: Tensor) -> tuple[Tensor, Tensor]:
    """(α g_c + (1 − α) g_d, α [B]) with α per sample as in the module docstring (α = 0 where the two
    directions coincide)."""
    diff = (g_d - g_c).flatten(1)
    den = (diff * diff).sum(dim=1)
    num = (diff * g_d.flatten(1)).sum(dim=1)
    alpha = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(den)).clamp(0.0, 1.0)
    a = alpha.reshape(-1, *([1] * (g_c.dim() - 1)))
    return a * g_c + (1 - a) * g_d, alpha


class BSD(ScoreDistillation):
    """PlacidDreamer's balanced score distillation (see the module docstring)."""

    name = "bsd"

    def gradient(self, z, x_t, noise, t, emb, camera):
        eps_u, eps_c = (e.float() for e in self.prior.predict_noise_pair(x_t, t, emb, camera))
        g, alpha = balanced_direction(self.cfg.bsd_lambda * (eps_c - eps_u), eps_u)
        self.last_alpha = alpha
        return self.abar(t).sqrt() * g
