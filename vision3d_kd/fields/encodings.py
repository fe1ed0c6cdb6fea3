"""Pure building blocks shared by the fields: frequency (positional) encoding, real spherical-harmonics
direction encoding, a truncated-gradient exponential and a small MLP builder."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "positional_encoding",
    "positional_encoding_dim",
    "sh_encoding",
    "sh_encoding_dim",
    "trunc_exp",
    "log_softplus",
    "mlp",
]

# Real SH normalisation constants, bands l = 0..3 (same basis as Plenoxels / Instant-NGP).
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def positional_encoding_dim(in_dim: int, n_freqs: int, include_input: bool = True) -> int:
    """Width of `positional_encoding` for an input of width `in_dim`."""
    return in_dim * (2 * n_freqs + int(include_input))


def positional_encoding(x: Tensor, n_freqs: int, include_input: bool = True) -> Tensor:
    """NeRF frequency encoding. x: [N, D] (typically in [-1, 1]) -> [N, D * (2 * n_freqs + include_input)].

    Columns: [x, sin(2^0 pi x), ..., sin(2^(K-1) pi x), cos(2^0 pi x), ..., cos(2^(K-1) pi x)],
    each block D wide (frequency-major).
    """
    parts = [x] if include_input else []
    if n_freqs > 0:
        freqs = (2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)) * math.pi
        scaled = (x[:, None, :] * freqs[None, :, None]).reshape(x.shape[0], -1)  # [N, K*D]
        parts += [torch.sin(scaled), torch.cos(scaled)]
    if not parts:
        return x.new_zeros(x.shape[0], 0)
    return torch.cat(parts, dim=-1)


def sh_encoding_dim(degree: int) -> int:
    """Width of `sh_encoding`: degree**2 (degree = number of bands, 1..4)."""
    return degree * degree


def sh_encoding(d: Tensor, degree: int = 4) -> Tensor:
    """Real spherical harmonics of unit directions. d: [N, 3] (world frame) -> [N, degree**2].

    `degree` counts bands l = 0 .. degree-1 (Instant-NGP convention), so degree 4 gives 16 values.
    The basis is orthonormal on the unit sphere (integral of Y_i Y_j = delta_ij).
    """
    if not 1 <= degree <= 4:
        raise ValueError(f"SH degree must be in 1..4, got {degree}")
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    out = [torch.full_like(x, _C0)]
    if degree > 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2[0] * x * y,
            _C2[1] * y * z,
            _C2[2] * (2.0 * zz - xx - yy),
            _C2[3] * x * z,
            _C2[4] * (xx - yy),
        ]
    if degree > 3:
        out += [
            _C3[0] * y * (3.0 * xx - yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (4.0 * zz - xx - yy),
            _C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            _C3[4] * x * (4.0 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


class _TruncExp(torch.autograd.Function):
    """exp(x) whose backward uses exp(min(x, 15)), so a large raw density cannot blow up the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """Elementwise exp with the Instant-NGP clamped gradient (d/dx = exp(min(x, 15)))."""
    return _TruncExp.apply(x)


def log_softplus(z: Tensor) -> Tensor:
    """log(softplus(z)) = log(log(1 + e^z)) for any finite z: ~z below -15 (where softplus(z) ~ e^z
    would underflow to 0 and the log to -inf), so values and gradients stay finite."""
    safe = torch.nn.functional.softplus(z.clamp(min=-15.0)).log()
    return torch.where(z < -15.0, z, safe)


def mlp(
    in_dim: int,
    hidden: int,
    n_hidden_layers: int,
    out_dim: int,
    out_activation: nn.Module | None = None,
) -> nn.Sequential:
    """Linear/ReLU stack: in_dim -> (hidden, ReLU) x n_hidden_layers -> out_dim [-> out_activation]."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden_layers):
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)
