"""Geometry teachers: ``teacher(frames [B,S,3,H,W] linear RGB in [0,1]) -> {tokens, grid, depth, confidence}``.

Two implementations share that interface: the bundled small network (`vision3d_kd/assets/event_teacher`, trained by
`tools/train_event_teacher.py` on simulated RGB frames with ground-truth depth) and the real VGGT loaded
from a local checkout of facebookresearch/vggt plus its weights file. Tokens are lists of [B,S,P,D]
patch tokens of four layers, on the token grid (h, w) returned beside them.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ...assets import default_event_teacher_path
from ...checkpoint import load_tensors, read_config, save_tensors, write_json
from ...errors import RunError
from .model import GeometryNet, NetConfig

__all__ = ["GeometryTeacher", "NetTeacher", "VGGTTeacher", "load_geometry_teacher", "save_net", "load_net"]


class GeometryTeacher(Protocol):
    def __call__(self, frames: Tensor) -> dict: ...


def save_net(run: Path, net: GeometryNet, extra: dict) -> None:
    """RUN/config.json ({"kind": "geometry_net", "net": NetConfig, ...extra}) + RUN/weights.safetensors."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    save_tensors(run / "weights.safetensors", net.state_dict())
    write_json(run / "config.json", {"kind": "geometry_net", "net": net.cfg.to_dict(), **extra})


def load_net(run: Path) -> tuple[GeometryNet, dict]:
    """A GeometryNet run written by `save_net` (RunError naming the problem otherwise)."""
    cfg = read_config(Path(run))
    if cfg.get("kind") != "geometry_net":
        raise RunError(f"{run}: not an event-depth network run (config.json kind is {cfg.get('kind')!r})")
    try:
        net = GeometryNet(NetConfig(**cfg["net"]))
    except (KeyError, TypeError) as exc:
        raise RunError(f"{run}/config.json: bad network configuration ({exc})") from None
    try:
        net.load_state_dict(load_tensors(Path(run) / "weights.safetensors"))
    except RuntimeError as exc:
        raise RunError(f"{run}: weights do not match config.json ({str(exc).splitlines()[0]})") from None
    return net.eval(), cfg


class NetTeacher:
    """The bundled teacher: a GeometryNet on RGB (input scaled to [-1, 1])."""

    def __init__(self, net: GeometryNet) -> None:
        self.net = net.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> dict:
        out = self.net(frames * 2.0 - 1.0)
        out["tokens"] = [out["tokens"][k] for k in self.net.taps]
        return out


class VGGTTeacher:
    """The real VGGT (facebookresearch/vggt) from a local checkout and weights file (model.safetensors, or
    model.pt read with weights_only). Frames are resized to 518 px wide (height a multiple of 14), depth and
    confidence resized back; the tokens of layers 4, 11, 17, 23 (patch tokens only) are returned."""

    LAYERS = (4, 11, 17, 23)

    def __init__(self, checkout: Path, weights: Path, device: str = "cpu") -> None:
        checkout, weights = Path(checkout), Path(weights)
        if not (checkout / "vggt" / "models" / "vggt.py").is_file():
            raise RunError(f"{checkout}: not a VGGT checkout (expected vggt/models/vggt.py; clone "
                           "github.com/facebookresearch/vggt there)")
        if not weights.is_file():
            raise RunError(f"{weights}: VGGT weights not found (download model.pt or model.safetensors of "
                           "facebook/VGGT-1B to a local path)")
        sys.path.insert(0, str(checkout))
        try:
            from vggt.models.vggt import VGGT
        except ImportError as exc:
            raise RunError(f"{checkout}: VGGT does not import ({exc})") from None
        finally:
            sys.path.remove(str(checkout))
        model = VGGT()
        if weights.suffix == ".safetensors":
            state = load_tensors(weights)
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self.model, self.device = model.eval().to(device), device

    @classmethod
    def from_model(cls, model: torch.nn.Module, device: str = "cpu") -> VGGTTeacher:
        """The adapter around a VGGT module already built (e.g. from a checkout, with random weights)."""
        teacher = cls.__new__(cls)
        teacher.model, teacher.device = model.eval().to(device), device
        return teacher

    def preprocess(self, frames: Tensor) -> Tensor:
        """Frames [B,S,3,H,W] linear RGB in [0,1] -> VGGT's input [B,S,3,h,518] sRGB in [0,1] (h: H scaled with
        the aspect ratio, rounded to a multiple of 14; VGGT normalises with ImageNet statistics itself)."""
        b, s, _, h, w = frames.shape
        wr = 518
        hr = max(14, round(h * wr / w / 14) * 14)
        return F.interpolate(frames.reshape(b * s, 3, h, w).clamp(0, 1) ** (1 / 2.2), size=(hr, wr), mode="bilinear",
                             align_corners=False).reshape(b, s, 3, hr, wr).to(self.device)

    @torch.no_grad()
    def __call__(self, frames: Tensor) -> dict:
        b, s, _, h, w = frames.shape
        x = self.preprocess(frames)
        hr, wr = x.shape[-2:]
        tokens, start = self.model.aggregator(x)
        depth, conf = self.model.depth_head(tokens, images=x, patch_start_idx=start)
        picked = [tokens[k][:, :, start:].float().cpu() for k in self.LAYERS]
        resize = lambda m: F.interpolate(m.reshape(b * s, 1, hr, wr).float().cpu(), size=(h, w),  # noqa: E731
                                         mode="bilinear", align_corners=False).reshape(b, s, h, w)
        d = resize(depth[..., 0])
        return {"tokens": picked, "grid": (hr // 14, wr // 14), "depth": d, "log_depth": d.clamp_min(1e-3).log(),
                "confidence": resize(conf)}


def load_geometry_teacher(path: Path | None = None, weights: Path | None = None) -> tuple[GeometryTeacher, dict]:
    """The bundled/trained teacher run at ``path`` (default vision3d_kd/assets/event_teacher), or the real VGGT when
    ``path`` is a VGGT checkout and ``weights`` its weights file. Returns (teacher, description)."""
    path = default_event_teacher_path(path)
    if (path / "vggt" / "models").is_dir() or weights is not None:
        if weights is None:
            raise RunError(f"{path}: a VGGT checkout needs --teacher-weights (model.pt or model.safetensors)")
        return VGGTTeacher(path, weights), {"teacher": "vggt", "path": str(path), "weights": str(weights)}
    if not path.exists():
        raise RunError(f"{path}: teacher not found (train one with tools/train_event_teacher.py)")
    net, cfg = load_net(path)
    if cfg["net"]["in_channels"] != 3:
        raise RunError(f"{path}: not an RGB teacher (input has {cfg['net']['in_channels']} channels)")
    digest = hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest()[:16]
    return NetTeacher(net), {"teacher": "bundled", "path": str(path), "fingerprint": digest}
