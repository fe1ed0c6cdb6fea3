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


def test_trainers_take_only_the_sample_objects_asked_for(tiny, monkeypatch):
    """`--samples-from 1 --samples-to 3`: the decoder decodes, and the LoRA starts its render term from, only
    sample-set objects 1 and 2 (their rings filled with 1 + the object's index), each beside its own object's truth
    (the decoder's kept input frame, the LoRA's conditioning latent), though the set is still unfinished beyond
    them; an empty range, or one without a set, is one ConfigError with nothing written."""
    from vision3d_kd.distill.gsv3d import geometric as geo
    from vision3d_kd.distill.gsv3d import train as tr
    from vision3d_kd.distill.gsv3d.decoder import GaussianDecoder
    from vision3d_kd.distill.gsv3d.generator import MultiViewGenerator
    from vision3d_kd.distill.gsv3d.orbit_set import OrbitSet
    from vision3d_kd.distill.gsv3d.sample_set import write_sample_set
    from vision3d_kd.errors import ConfigError

    from .gsv3d_tiny import TINY_DECODER

    root, g, out = tiny["root"], load_generator(tiny["gen"]), tiny["root"] / "ranged"

    def stop_after_three(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the set still owes object 3: objects 0-2 are usable all the same
        write_sample_set(tiny["data"], g, "gen", out, 4, steps=4, save_every=1, progress=stop_after_three)
    part = out / "part_0_of_1.npy"
    rings = np.load(part)
    np.save(part, (np.arange(3, dtype=rings.dtype) + 1).reshape(3, 1, 1, 1, 1, 1) + 0 * rings)
    true_inputs = OrbitSet(tiny["data"], g).latents[:, 0]
    ranged = {"samples_from": 1, "samples_to": 3}

    def owner(frames: torch.Tensor) -> int:
        """The object whose sample-set value fills these frames (1 + its index)."""
        value = float(frames.flatten()[0])
        assert bool((frames == value).all()) and value in (2.0, 3.0)
        return int(value) - 1

    seen: list[torch.Tensor] = []
    forward = GaussianDecoder.forward
    monkeypatch.setattr(GaussianDecoder, "forward", lambda self, lat, *a: seen.append(lat.detach()) or
                        forward(self, lat, *a))
    cfg = tr.DecoderTrainConfig(steps=3, batch=2, ring_views=1, novel_views=1, decoder=TINY_DECODER, lr=0.0,
                                generated=1.0, keep_input=True, **ranged)
    tr.train_decoder(tiny["data"], root / "dec_ranged", cfg, g, "gen", show_progress=False, init=tiny["dec"],
                     samples=out)
    assert len(seen) == 3 and all(torch.equal(lat[0], true_inputs[owner(lat[1:])]) for b in seen for lat in b)

    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    predict = MultiViewGenerator.predict_noise
    monkeypatch.setattr(MultiViewGenerator, "predict_noise", lambda self, x_t, t, cond, *a: calls.append(
        (x_t.detach(), cond.detach())) or predict(self, x_t, t, cond, *a))
    lora = geo.LoraTrainConfig(steps=3, rank=2, ring_views=1, novel_views=1, on_policy=1.0, **ranged)
    geo.train_lora(tiny["data"], root / "lora_ranged", lora, load_generator(tiny["gen"]), load_decoder(tiny["dec"]),
                   {}, show_progress=False, samples=out)
    own = [(x, c) for x, c in calls if float(x.flatten()[0]) in (2.0, 3.0)]
    assert len(own) == 3 and all(torch.equal(c[0], true_inputs[owner(x[0])]) for x, c in own)

    bad = [(tr.DecoderTrainConfig(generated=1.0, samples_from=3, samples_to=3), out),
           (tr.DecoderTrainConfig(samples_from=1), None),
           (geo.LoraTrainConfig(on_policy=1.0, samples_from=2, samples_to=1), out)]
    for k, (cfg_bad, samples) in enumerate(bad):
        run = root / f"bad_range_{k}"
        with pytest.raises(ConfigError, match="samples-from"):
            if isinstance(cfg_bad, tr.DecoderTrainConfig):
                tr.train_decoder(tiny["data"], run, cfg_bad, g, "gen", show_progress=False, samples=samples)
            else:
                geo.train_lora(tiny["data"], run, cfg_bad, load_generator(tiny["gen"]), load_decoder(tiny["dec"]),
                               {}, show_progress=False, samples=samples)
        assert not run.exists() or not any(run.iterdir())
