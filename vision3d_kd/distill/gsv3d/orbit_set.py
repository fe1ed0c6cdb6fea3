"""A training orbit set (`data/object_orbits.py`) in memory for the GSV3D trainers, with every ring view's VAE
latent computed once and cached beside the data (`latents_<vae hash>.npy`, float16), and the render losses
the decoder and the geometric distillation share."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...cameras import Cameras, camera_rays
from ...data.object_orbits import load_orbit_dataset, orbit_cameras
from ...render.splat import render_splats

__all__ = ["OrbitSet", "ray_to_camera_z", "render_loss", "view_losses"]


def ray_to_camera_z(cams: Cameras) -> Tensor:
    """[N,H,W] factors turning ray distance into camera z (the depth `render_splats` returns) per pixel."""
    n, h, w = len(cams), cams.height, cams.width
    iy, ix = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    idx = torch.arange(n).repeat_interleave(h * w)
    _, d = camera_rays(cams, idx, ix.reshape(-1).repeat(n) + 0.5, iy.reshape(-1).repeat(n) + 0.5)
    forward = -cams.c2w[:, :3, 2].index_select(0, idx)
    return (d * forward).sum(-1).reshape(n, h, w)


def render_loss(splats, cams: Cameras, rgb: Tensor, opacity: Tensor, ray_depth: Tensor, w_mask: float = 1.0,
                w_depth: float = 0.5) -> tuple[Tensor, dict[str, float]]:
    """Mean over the K cameras [K] of MSE(rgb on white) + w_mask·MSE(opacity) + w_depth·L1(camera z where the
    true surface is seen); targets rgb [K,H,W,3], opacity [K,H,W], ray_depth [K,H,W] (0 on a miss)."""
    z_true = ray_depth * ray_to_camera_z(cams)
    white = torch.ones(3, dtype=rgb.dtype)
    terms = {"rgb": 0.0, "mask": 0.0, "depth": 0.0}
    total = rgb.new_zeros(())
    for k in range(len(cams)):
        out = render_splats(splats, cams[k], background=white)
        l_rgb = F.mse_loss(out["rgb"], rgb[k])
        l_mask = F.mse_loss(out["opacity"], opacity[k])
        seen = (opacity[k] > 0.5) & (ray_depth[k] > 0)
        l_depth = (out["depth"][seen] - z_true[k][seen]).abs().mean() if seen.any() else total * 0
        total = total + l_rgb + w_mask * l_mask + w_depth * l_depth
        for name, v in (("rgb", l_rgb), ("mask", l_mask), ("depth", l_depth)):
            terms[name] += float(v.detach()) / len(cams)
    return total / len(cams), terms


class OrbitSet:
    """Orbit shards of `folder` with ring latents from `model.encode` (a MultiViewGenerator's VAE; the cache
    file is keyed by a hash of the VAE's weights)."""

    def __init__(self, folder: Path, model, chunk: int = 256) -> None:
        data = load_orbit_dataset(folder)
        self.rgb, self.opacity, self.depth, self.meta, self.ring = (
            data["rgb"], data["opacity"], data["depth"], data["meta"], data["ring"])
        self.n, self.size = self.rgb.shape[0], self.rgb.shape[2]
        self.elevation = torch.tensor([[float(e) for e in m["elevation_deg"]] for m in self.meta])
        self.azimuth = torch.tensor([[float(a) for a in m["azimuth_deg"]] for m in self.meta])
        digest = hashlib.sha1(f"{self.n}-{self.ring}".encode())
        for t in model.vae.state_dict().values():
            digest.update(t.detach().float().numpy().tobytes())
        key = digest.hexdigest()[:12]
        cache = Path(folder) / f"latents_{key}.npy"
        if cache.is_file():
            lat = np.load(cache)
        else:
            frames = self.rgb[:, : self.ring].reshape(-1, self.size, self.size, 3)
            parts = [model.encode(self.images(frames[i:i + chunk])).numpy().astype(np.float16)
                     for i in range(0, len(frames), chunk)]
            lat = np.concatenate(parts)
            np.save(cache, lat)
        self.latents = torch.from_numpy(lat.astype(np.float32)).reshape(self.n, self.ring, *lat.shape[1:])

    @staticmethod
    def images(frames: np.ndarray) -> Tensor:
        """[N,3,S,S] float in [0,1] of uint8 frames [N,S,S,3]."""
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0

    def inputs(self, ids: list[int]) -> Tensor:
        """Input views [B,3,S,S] (ring frame 0) of objects `ids`."""
        return self.images(self.rgb[ids, 0])

    def cameras(self, ids: list[int], views: Tensor) -> Cameras:
        """Cameras [B·K] of views [B,K] (indices into each object's views), S² pixels."""
        el = torch.stack([self.elevation[i, views[j]] for j, i in enumerate(ids)]).reshape(-1)
        az = torch.stack([self.azimuth[i, views[j]] for j, i in enumerate(ids)]).reshape(-1)
        return orbit_cameras(el, az, self.size)

    def targets(self, i: int, views: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Ground truth of object i at its views [K]: rgb [K,S,S,3], opacity [K,S,S] in [0,1], ray depth [K,S,S]."""
        v = views.numpy()
        rgb = torch.from_numpy(self.rgb[i, v].astype(np.float32) / 255.0)
        opacity = torch.from_numpy(self.opacity[i, v].astype(np.float32) / 255.0)
        return rgb, opacity, torch.from_numpy(self.depth[i, v].astype(np.float32))


def view_losses(splats: list, data: OrbitSet, ids: list[int], cfg, generator: torch.Generator
                ) -> tuple[list[Tensor], dict[str, float]]:
    """`render_loss` of each object's Gaussians at `cfg.ring_views` random ring views and `cfg.novel_views`
    random novel views (per object [B]), and its terms averaged over the objects (the trainers' supervision)."""
    n_views = data.azimuth.shape[1]
    losses, terms = [], {"rgb": 0.0, "mask": 0.0, "depth": 0.0}
    for j, i in enumerate(ids):
        pick = torch.randperm(data.ring, generator=generator)[: cfg.ring_views]
        novel = data.ring + torch.randperm(n_views - data.ring, generator=generator)[: cfg.novel_views]
        views = torch.cat([pick, novel])
        loss, t = render_loss(splats[j], data.cameras([i], views[None]), *data.targets(i, views), cfg.w_mask,
                              cfg.w_depth)
        losses.append(loss)
        for k in terms:
            terms[k] += t[k] / len(ids)
    return losses, terms
