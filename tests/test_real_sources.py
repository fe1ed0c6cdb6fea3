"""The real-model adapters against the real source, when a local checkout is given (skipped otherwise):
V3KD_VGGT_SRC — a checkout of facebookresearch/vggt (its `vggt/` package importable; needs einops).
The model is built with random weights (nothing is downloaded) and the adapter's tokens, depth and
confidence are checked against the layers and heads it claims to read, and against VGGT's own forward."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.nn.functional as F

VGGT_SRC = os.environ.get("V3KD_VGGT_SRC")


@pytest.mark.skipif(not VGGT_SRC, reason="set V3KD_VGGT_SRC to a local checkout of facebookresearch/vggt")
def test_vggt_adapter_reads_the_layers_and_heads_it_claims():
    from vision3d_kd.distill.event_vggt.teacher import VGGTTeacher

    sys.path.insert(0, VGGT_SRC)
    try:
        from vggt.models.vggt import VGGT
    finally:
        sys.path.remove(VGGT_SRC)
    torch.manual_seed(0)
    model = VGGT().eval()  # the released architecture (VGGT-1B), random weights
    teacher = VGGTTeacher.from_model(model)
    # the depth head reads exactly the aggregator layers whose tokens the adapter hands to the student
    assert list(model.depth_head.intermediate_layer_idx) == list(VGGTTeacher.LAYERS)
    seen = {}
    hook = model.depth_head.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(tokens=args[0], start=kwargs["patch_start_idx"]), with_kwargs=True)
    frames = torch.rand(1, 2, 3, 12, 20, generator=torch.Generator().manual_seed(1))
    out = teacher(frames)
    hook.remove()
    x = teacher.preprocess(frames)
    h, w = x.shape[-2] // 14, x.shape[-1] // 14
    assert out["grid"] == (h, w) and x.shape[-1] == 518 and x.shape[-2] % 14 == 0
    assert seen["start"] == 1 + model.aggregator.register_token.shape[-2]  # camera token + register tokens
    assert len(out["tokens"]) == 4
    for picked, layer in zip(out["tokens"], VGGTTeacher.LAYERS, strict=True):
        assert picked.shape == (1, 2, h * w, 2 * 1024)  # frame- and global-attention outputs, patch tokens only
        assert torch.equal(picked, seen["tokens"][layer][:, :, seen["start"]:].float())
    with torch.no_grad():
        own = model(x)  # VGGT's own forward on the adapter's input: the same depth and confidence
    back = lambda m: F.interpolate(m.reshape(2, 1, *x.shape[-2:]), size=(12, 20), mode="bilinear",  # noqa: E731
                                   align_corners=False).reshape(1, 2, 12, 20)
    assert torch.allclose(out["depth"], back(own["depth"][..., 0]), rtol=1e-4, atol=1e-5)
    assert torch.allclose(out["confidence"], back(own["depth_conf"]), rtol=1e-4, atol=1e-5)
    assert (out["depth"] > 0).all() and (out["confidence"] >= 1).all()  # exp and 1 + exp activations
    assert torch.allclose(out["log_depth"], out["depth"].log())
