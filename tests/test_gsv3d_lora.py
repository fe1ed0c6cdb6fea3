"""GSV3D's geometric distillation on tiny models: the on-policy render term and the render weighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vision3d_kd.distill.gsv3d.decoder import load_decoder
from vision3d_kd.distill.gsv3d.generator import load_generator


def test_lora_on_policy_renders_the_generators_own_chain_states(tiny, monkeypatch):
    """`train_lora --samples --on-policy 1`: every step's render term starts from a state the sample set's chain
    kept (here all 7.0), at the timestep it was kept at, guided (both branches); without a set it is refused."""
    from vision3d_kd.distill.gsv3d import geometric as geo
    from vision3d_kd.distill.gsv3d.generator import MultiViewGenerator
    from vision3d_kd.distill.gsv3d.sample_set import write_sample_set
    from vision3d_kd.errors import ConfigError

    root = tiny["root"]
    out = write_sample_set(tiny["data"], load_generator(tiny["gen"]), "gen", root / "chains", 2, steps=4)
    part = out / "part_0_of_1.npy"
    np.save(part, np.full_like(np.load(part), 7.0))
    cfg = geo.LoraTrainConfig(steps=2, rank=2, ring_views=1, novel_views=1, on_policy=1.0)
    args = (tiny["data"], root / "lora_own", cfg, load_generator(tiny["gen"]), load_decoder(tiny["dec"]), {})
    with pytest.raises(ConfigError, match="go together"):
        geo.train_lora(*args, show_progress=False)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    predict = MultiViewGenerator.predict_noise
    monkeypatch.setattr(MultiViewGenerator, "predict_noise", lambda self, x_t, t, *a: calls.append(
        (x_t.detach(), t)) or predict(self, x_t, t, *a))
    geo.train_lora(*args, show_progress=False, samples=out)
    own = [(x, t) for x, t in calls if bool((x == 7.0).all())]
    assert len(own) == 2 and len(calls) == 4  # per step: the ε-loss on noised truth, then one guided own state
    for x, t in own:
        assert x.shape[0] == 2 and int(t[0]) in (666, 333, 0)


def test_lora_render_weight_is_alpha_or_its_root(tiny, monkeypatch):
    """`--render-weight`: with render losses of 1 and the ε-term off, a step's loss is ᾱ_t ("alpha") or √ᾱ_t
    ("sqrt-alpha") at the same drawn t; another name is one ConfigError before anything is written."""
    from vision3d_kd.distill.gsv3d import geometric as geo
    from vision3d_kd.errors import ConfigError

    monkeypatch.setattr(geo, "view_losses", lambda *a: ([torch.ones(())], {"rgb": 0.0}))
    losses: dict[str, float] = {}
    monkeypatch.setattr(geo.LoraTask, "apply", lambda self, loss, step: losses.update(
        {self.cfg.render_weight: float(loss.detach())}))

    def run(weight: str) -> None:
        cfg = geo.LoraTrainConfig(steps=1, rank=2, ring_views=1, novel_views=1, w_diffusion=0.0, render_weight=weight)
        geo.train_lora(tiny["data"], tiny["root"] / f"weight_{weight}", cfg, load_generator(tiny["gen"]),
                       load_decoder(tiny["dec"]), {}, show_progress=False)

    run("alpha")
    run("sqrt-alpha")
    assert 0.0 < losses["alpha"] < 1.0 and losses["sqrt-alpha"] == pytest.approx(losses["alpha"] ** 0.5, rel=1e-5)
    with pytest.raises(ConfigError, match="render-weight"):
        run("cube")
    assert not (tiny["root"] / "weight_cube").exists()
