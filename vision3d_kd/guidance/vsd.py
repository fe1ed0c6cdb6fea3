"""Variational Score Distillation (ProlificDreamer).

The rendered particles' own score is modelled by a LoRA copy of the prior's UNet (peft adapters on the
attention projections of a deep copy, so the prior itself never changes) plus a camera embedding added to
the UNet's time embedding (through a forward hook): with `vsd_camera: c2w` (the default, as ProlificDreamer's
code) the flattened 4x4 OpenGL camera-to-world matrix through a two-layer MLP at PyTorch's default init; with
`angles`, `camera_features` (sin/cos of elevation and azimuth, radius / 4) through the same MLP with its last
layer zero-initialised, so the copy starts equal to the prior. The gradient is

    g = w(t) (ε̂_prior − ε_lora(x_t, t, y, c)),   ε̂_prior = ε_∅ + s (ε_c − ε_∅)  (s = 7.5 in the paper),

where the prior sees the view-dependent prompt and the LoRA the bare one, y (as ProlificDreamer's code and
threestudio do: the camera reaches it through c), and after each step the LoRA is trained on the detached
particles z with its own t ~ U[0, T) and the DDPM loss (ε target, or v for v-prediction priors), the
camera hidden (its input zeroed) for the whole batch with probability `camera_dropout`, AdamW at `lora_lr`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cameras import look_at
from ..errors import ConfigError
from .prior import CAMERA_FEATURES, CameraCondition, DiffusionPrior, camera_features
from .schedules import weighting
from .sds import GuidanceConfig, ScoreDistillation

__all__ = ["VSD", "LoraUNet", "camera_to_world"]


def camera_to_world(cam: CameraCondition) -> Tensor:
    """[B, 4, 4] OpenGL camera-to-world matrices of cameras at (elevation, azimuth, radius) looking at the
    origin with +z up (the inverse of `CameraCondition.from_c2w`)."""
    el, az = torch.deg2rad(cam.elevation_deg.float()), torch.deg2rad(cam.azimuth_deg.float())
    r = cam.radius.float()
    eye = torch.stack([r * el.cos() * az.cos(), r * el.cos() * az.sin(), r * el.sin()], dim=-1)
    return look_at(eye, torch.zeros_like(eye), "+z")

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class LoraUNet(nn.Module):
    """A LoRA-adapted, camera-embedded copy of a DiffusersPrior's UNet. The copied weights stay frozen in the
    prior's dtype; what trains (the LoRA matrices and the camera MLP) is float32 master weights, and a 16-bit
    prior's copy runs under autocast to that dtype."""

    def __init__(self, prior: DiffusionPrior, rank: int, camera: str = "c2w") -> None:
        super().__init__()
        from peft import LoraConfig

        base = getattr(prior, "unet", None)
        if base is None:
            raise ConfigError("VSD needs a diffusers prior (a UNet to copy for its LoRA)")
        self.prior = prior
        self.unet = copy.deepcopy(base).requires_grad_(False)
        self.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS))
        for p in self.unet.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        self.dtype = next(base.parameters()).dtype
        dim = self.unet.time_embedding.linear_2.out_features
        self.camera = camera
        self.camera_mlp = nn.Sequential(nn.Linear(16 if camera == "c2w" else CAMERA_FEATURES, dim), nn.SiLU(),
                                        nn.Linear(dim, dim))
        if camera == "angles":
            nn.init.zeros_(self.camera_mlp[2].weight)
            nn.init.zeros_(self.camera_mlp[2].bias)
        self._camera_emb: Tensor | None = None
        self.unet.time_embedding.register_forward_hook(self._add_camera)

    def _add_camera(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        return output if self._camera_emb is None else output + self._camera_emb.to(output.dtype)

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x_t: Tensor, t: Tensor, emb: Tensor, camera: CameraCondition | None,
                hide_camera: Tensor | None = None, pooled: Tensor | None = None) -> Tensor:
        """The copy's raw output [B,C,h,w] float32 (ε or v, like the prior); hide_camera [B] bool zeroes the
        camera input of those samples; pooled [B,P]: the pooled text of priors that take one (SDXL)."""
        prior = self.prior
        dev = x_t.device
        labels = None
        if camera is not None:
            labels = camera_features(camera).to(dev) if prior.camera_conditioned else None
            feats = (camera_to_world(camera).flatten(1) if self.camera == "c2w" else camera_features(camera)).to(dev)
            if hide_camera is not None:
                feats = torch.where(hide_camera[:, None].to(dev), torch.zeros_like(feats), feats)
            self._camera_emb = self.camera_mlp(feats)
        try:
            half = self.dtype in (torch.float16, torch.bfloat16)
            with torch.autocast(dev.type, dtype=self.dtype, enabled=half):
                out = self.unet(x_t.to(self.dtype), t, emb.to(self.dtype), class_labels=labels,
                                added_cond_kwargs=prior.added_conditions(pooled, x_t.shape[0])).sample.float()
        finally:
            self._camera_emb = None
        return out[:, : prior.channels]

    def epsilon(self, x_t: Tensor, t: Tensor, emb: Tensor, camera: CameraCondition | None,
                pooled: Tensor | None = None) -> Tensor:
        """ε predicted by the copy (v converted for v-prediction priors), float32."""
        return self.prior.to_epsilon(self(x_t, t, emb, camera, pooled=pooled), x_t, t)


class VSD(ScoreDistillation):
    """ProlificDreamer's variational score distillation (see the module docstring)."""

    name = "vsd"

    def __init__(self, prior: DiffusionPrior, cfg: GuidanceConfig) -> None:
        super().__init__(prior, cfg)
        self.lora = LoraUNet(prior, cfg.lora_rank, cfg.vsd_camera)
        self.optimizer = torch.optim.AdamW(self.lora.trainable(), lr=cfg.lora_lr)

    def gradient(self, z, x_t, noise, t, emb, camera):
        eps_hat = self.prior.predict_noise(x_t, t, emb, camera, self.cfg.guidance_scale)
        text, pooled = emb.bare()
        eps_lora = self.lora.epsilon(x_t, t, text, camera, pooled)
        w = weighting(self.cfg.weighting, self.abar(t).flatten()).reshape(-1, 1, 1, 1)
        return w * (eps_hat - eps_lora)

    def after_step(self, z, emb, camera, generator):
        """Train the LoRA `lora_steps` times on the detached particles z; returns {'lora_loss': ...}."""
        losses = []
        b, T = z.shape[0], self.prior.num_train_timesteps
        text, pooled = emb.bare()
        for _ in range(self.cfg.lora_steps):
            t = torch.randint(0, T, (b,), generator=generator).to(z.device)
            noise = torch.randn(z.shape, generator=generator).to(z)
            x_t = self.prior.add_noise(z, noise, t)
            hide = (torch.rand(1, generator=generator) < self.cfg.camera_dropout).expand(b)  # the whole batch
            out = self.lora(x_t, t, text, camera, hide, pooled)
            if self.prior.prediction_type == "v_prediction":
                a = self.abar(t)
                target = a.sqrt() * noise - (1 - a).sqrt() * z
            else:
                target = noise
            loss = F.mse_loss(out.float(), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return {"lora_loss": sum(losses) / len(losses)}

    def state_dict(self) -> dict[str, Tensor]:
        """The LoRA's trainable tensors and its AdamW moments (`adam.<index>.<key>`), for checkpoints: a
        resumed run continues exactly where it stopped."""
        out = {k: v.detach().clone() for k, v in self.lora.named_parameters() if v.requires_grad}
        for pid, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                out[f"adam.{pid}.{key}"] = value.clone() if isinstance(value, Tensor) else torch.tensor(value)
        return out

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        params = dict(self.lora.named_parameters())
        state: dict[int, dict[str, Tensor]] = {}
        with torch.no_grad():
            for k, v in tensors.items():
                if k.startswith("adam."):
                    _, pid, key = k.split(".", 2)
                    state.setdefault(int(pid), {})[key] = v
                else:
                    params[k].copy_(v)
        if state:  # (checkpoints written before the moments were saved restart them)
            groups = self.optimizer.state_dict()["param_groups"]
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
