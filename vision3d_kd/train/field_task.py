"""State shared by the tasks that train a radiance field with an occupancy grid (`fit`, `convert`):
the field, its grid, Adam with the warm-up + exponential-decay schedule, the rays per step, and how
they are checkpointed (weights + config, occupancy grid, optimizer moments, RNG, rays per step).

Data-parallel (`dist.world_size` > 1, under torchrun): every rank holds the same field, grid and optimizer;
a step's gradients are summed over the ranks before the (identical) optimizer step, and the samples a step
took are summed too, so the rays per step adapt the same way everywhere — the ranks never drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_tensors
from ..parallel import DistEnv, all_reduce_gradients
from ..render.occupancy import OccupancyGrid, density_for_opacity
from ..render.volume import RenderConfig
from ..runs import OCCUPANCY, save_field, save_occupancy
from .config import TrainConfig
from .driver import TrainTask
from .optim import adapt_batch_rays, make_optimizer, set_lr
from .state import load_train_state, save_train_state

__all__ = ["FieldTask"]


class FieldTask(TrainTask):
    """A field being trained: subclasses implement `step` (and `finish`) with `schedule_step` and
    `optimise`; saving, restoring and snapshots are shared."""

    def __init__(self, name: str, field, grid: OccupancyGrid, tc: TrainConfig, generator: torch.Generator,
                 run_cfg: dict[str, Any], extra: dict[str, tuple[torch.nn.Parameter, float]] | None = None,
                 dist: DistEnv | None = None) -> None:
        """`extra`: more trained tensors by name with their peak learning rates (optimised and checkpointed
        with the field, e.g. camera corrections); `dist`: this rank's place in a data-parallel run."""
        self.name, self.field, self.grid, self.tc, self.gen, self.run_cfg = name, field, grid, tc, generator, run_cfg
        self.dist = dist or DistEnv()
        self.extra = extra or {}
        self.opt = self._optimizer()
        self.batch_rays = tc.batch_rays
        self.density_threshold = density_for_opacity(tc.occ_opacity_threshold, tc.step_size)
        self.settings = RenderConfig(step_size=tc.step_size, opacity_min=tc.opacity_min,
                                     early_stop_eps=tc.early_stop_eps)

    def schedule_step(self, step: int, progress: float) -> float:
        """Before step `step`: rebuild the optimizer when the field changed shape (e.g. upsampled), set the
        learning rate; returns the peak lr."""
        if self.field.on_step(step):
            self.opt = self._optimizer()
        return set_lr(self.opt, progress, step, self.tc)

    def _optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.field, self.tc.lr, [{"params": [p], "lr": lr} for p, lr in self.extra.values()])

    def optimise(self, loss: torch.Tensor, n_samples: int) -> int:
        """Backward, gradients summed over the ranks, Adam step, then the rays per step adapted to the samples
        the step took (on all ranks together); returns that sample count."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.dist.distributed:
            n_samples = self.sync_gradients(n_samples)
        self.opt.step()
        self.batch_rays = adapt_batch_rays(self.batch_rays, n_samples, self.tc)
        return n_samples

    def sync_gradients(self, n_samples: int = 0) -> int:
        """Sum every optimised tensor's gradient (zeros where a rank has none) and `n_samples` over the ranks
        in one all-reduce; returns the summed sample count."""
        params = [p for g in self.opt.param_groups for p in g["params"]]
        count = torch.tensor([float(n_samples)], device=params[0].device)
        all_reduce_gradients(params, [count])
        return int(count.item())

    def save(self, out: Path, meta: dict[str, Any]) -> None:
        save_train_state(out, self.opt, {**meta, "batch_rays": self.batch_rays}, self.gen,
                         {name: p.detach() for name, (p, _) in self.extra.items()})
        save_occupancy(out, self.grid)
        save_field(out, self.field, self.run_cfg)

    def restore(self, out: Path) -> dict[str, Any]:
        meta, tensors = load_train_state(out, self.opt, self.gen)
        with torch.no_grad():
            for name, (p, _) in self.extra.items():
                p.copy_(tensors[name])
        self.grid.load_state_dict(load_tensors(out / OCCUPANCY))
        self.batch_rays = int(meta["batch_rays"])
        return meta

    def snapshot(self, path: Path) -> None:
        save_field(path, self.field, self.run_cfg)
        save_occupancy(path, self.grid)
