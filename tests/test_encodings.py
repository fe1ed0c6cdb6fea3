"""The fields' shared encodings: positional encoding layout, the SH basis, trunc_exp's clamped gradient, `mlp`."""

import math

import torch

from vision3d_kd.fields.encodings import mlp, positional_encoding, positional_encoding_dim, sh_encoding, trunc_exp


def test_positional_encoding_layout():
    x = torch.tensor([[0.25, -0.5]])
    out = positional_encoding(x, 3)
    assert out.shape == (1, positional_encoding_dim(2, 3)) == (1, 14)
    torch.testing.assert_close(out[0, :2], x[0])
    torch.testing.assert_close(out[0, 2 + 2 * 2 + 1], torch.sin(4 * math.pi * x[0, 1]))  # sin, k=2, dim 1
    torch.testing.assert_close(out[0, 8], torch.cos(math.pi * x[0, 0]))  # first cos block
    assert positional_encoding(x, 0, include_input=False).shape == (1, 0)


def test_sh_basis_is_orthonormal():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    y = sh_encoding(d, 4)
    assert y.shape == (200_000, 16)
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)
    assert sh_encoding(d[:5], 2).shape == (5, 4)


def test_trunc_exp_clamps_the_gradient():
    x = torch.tensor([0.5, 40.0], requires_grad=True)
    y = trunc_exp(x)
    torch.testing.assert_close(y.detach(), torch.exp(x.detach()))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([math.exp(0.5), math.exp(15.0)]))


def test_mlp_builder():
    net = mlp(5, 8, 2, 3, torch.nn.Sigmoid())
    assert sum(isinstance(m, torch.nn.Linear) for m in net) == 3
    out = net(torch.randn(4, 5))
    assert out.shape == (4, 3) and (out > 0).all() and (out < 1).all()
    assert len(mlp(5, 8, 0, 3)) == 1
