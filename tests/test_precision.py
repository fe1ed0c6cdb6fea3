"""bf16 matmul path of field MLPs: bucket padding, closeness to fp32, gradients, config."""

from __future__ import annotations

import pytest
import torch

from vision3d_kd.errors import ConfigError
from vision3d_kd.fields import build_field
from vision3d_kd.fields.precision import bucket_rows, resolve_precision, run_in_precision


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000, 4097, 33000, 262145])
def test_bucket_rows_pads_at_most_an_eighth(n):
    b = bucket_rows(n)
    assert b >= n and (b - n) <= max(255, n // 8)
    assert bucket_rows(b) == b  # buckets are fixed points: shapes repeat across steps


def test_few_distinct_buckets_over_a_range():
    sizes = {bucket_rows(n) for n in range(20_000, 40_000)}
    assert len(sizes) <= 12


def test_resolve_precision():
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")


def test_run_in_precision_crops_and_returns_float32():
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3)
    x = torch.randn(300, 5)
    out = run_in_precision("bf16", lin, x)
    assert out.shape == (300, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, lin(x), atol=3e-2, rtol=3e-2)


def test_mlp_field_bf16_matches_fp32_values_and_gradients():
    cfg = {"field": "mlp", "aabb": [[-1, -1, -1], [1, 1, 1]], "width": 32, "depth": 3, "xyz_freqs": 4}
    torch.manual_seed(0)
    f32 = build_field({**cfg, "precision": "fp32"})
    bf = build_field({**cfg, "precision": "bf16"})
    bf.load_state_dict(f32.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.rand(777, 3, generator=g) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(777, 3, generator=g), dim=-1)
    s32, c32 = f32(x, d)
    sbf, cbf = bf(x, d)
    assert sbf.dtype == torch.float32 and cbf.dtype == torch.float32
    torch.testing.assert_close(sbf, s32, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(cbf, c32, atol=1e-2, rtol=1e-2)
    (s32.sum() + c32.sum()).backward()
    (sbf.sum() + cbf.sum()).backward()
    for (name, p32), pbf in zip(f32.named_parameters(), bf.parameters(), strict=True):
        assert pbf.grad is not None, name
        cos = torch.nn.functional.cosine_similarity(p32.grad.flatten(), pbf.grad.flatten(), dim=0)
        assert cos > 0.99, (name, float(cos))


def test_precision_is_validated_and_saved():
    with pytest.raises(ConfigError):
        build_field({"field": "mlp", "precision": "fp16"})
    assert build_field({"field": "mlp", "precision": "fp32"}).to_dict()["precision"] == "fp32"
