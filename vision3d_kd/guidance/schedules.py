"""Timestep schedules and weightings w(t) for score distillation.

Timesteps are integers in [0, T) of the prior's DDPM schedule; the schedule's bounds are fractions of
T. `t_max` may shrink after a warm-up (ProlificDreamer and PlacidDreamer drop it from 0.98 to 0.5):
`anneal="drop"` switches at the end of the warm-up, `"linear"` interpolates over it. Progress is the
fraction of the optimisation done, in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["TimestepSchedule", "WEIGHTINGS", "weighting"]

WEIGHTINGS = ("sds", "uniform", "fantasia")


def weighting(name: str, alphas_cumprod_t: Tensor) -> Tensor:
    """w(t) [B] from ᾱ_t [B]: 'sds' 1 − ᾱ_t (DreamFusion), 'uniform' 1, 'fantasia' √ᾱ_t (1 − ᾱ_t)."""
    a = alphas_cumprod_t.float()
    if name == "sds":
        return 1.0 - a
    if name == "uniform":
        return torch.ones_like(a)
    if name == "fantasia":
        return a.sqrt() * (1.0 - a)
    raise ConfigError(f"unknown weighting {name!r}; choose one of {', '.join(WEIGHTINGS)}")


@dataclass
class TimestepSchedule:
    """t ~ U[t_min, t_max(progress)] · T, with t_max going from `t_max` to `t_max_end` over the warm-up
    (the first `warmup` fraction of the run) by `anneal` ('drop', 'linear' or 'none')."""

    t_min: float = 0.02
    t_max: float = 0.98
    t_max_end: float | None = None
    warmup: float = 0.0
    anneal: str = "none"

    def __post_init__(self) -> None:
        for name in ("t_min", "t_max", "warmup"):
            v = float(getattr(self, name))
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        if self.t_min >= self.t_max:
            raise ConfigError(f"t_min ({self.t_min}) must be below t_max ({self.t_max})")
        if self.t_max_end is not None and not (self.t_min < float(self.t_max_end) <= 1.0):
            raise ConfigError(f"t_max_end must be in (t_min, 1], got {self.t_max_end}")
        if self.anneal not in ("none", "drop", "linear"):
            raise ConfigError(f"unknown anneal {self.anneal!r}; choose none, drop or linear")

    def bounds(self, progress: float) -> tuple[float, float]:
        """(low, high) fractions of T at this progress."""
        end = self.t_max if self.t_max_end is None else float(self.t_max_end)
        if self.anneal == "none" or end == self.t_max:
            return self.t_min, self.t_max
        if self.anneal == "drop":
            return self.t_min, self.t_max if progress < self.warmup else end
        f = 1.0 if self.warmup <= 0 else min(max(progress / self.warmup, 0.0), 1.0)
        return self.t_min, self.t_max + (end - self.t_max) * f

    def sample(self, n: int, progress: float, num_train_timesteps: int,
               generator: torch.Generator | None = None, cap: float | None = None) -> Tensor:
        """n integer timesteps [n] drawn uniformly from the current bounds (the upper one at most `cap`)."""
        lo, hi = self.bounds(progress)
        hi = hi if cap is None else max(min(hi, cap), lo)
        t_lo = int(lo * num_train_timesteps)
        t_hi = max(int(hi * num_train_timesteps), t_lo + 1)
        return torch.randint(t_lo, min(t_hi, num_train_timesteps - 1) + 1, (n,), generator=generator)
