"""The tiny GSV3D models the GSV3D tests share (one set per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision3d_kd.data.object_orbits import write_orbit_dataset
from vision3d_kd.distill.gsv3d.decoder import DecoderConfig, load_decoder
from vision3d_kd.distill.gsv3d.generator import load_generator

TINY_DECODER = DecoderConfig(dim=32, depth=1, heads=2, image_size=32)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A 32-px orbit set (4 objects, ring 4, 2 novel views), a tiny camera-conditioned SD prior, and a
    generator, decoder and LoRA trained 2 steps each on them (exported like the bundled ones)."""
    from tests.tiny_pipelines import save_tiny_sd
    from vision3d_kd.distill.gsv3d import geometric as geo
    from vision3d_kd.distill.gsv3d import train as tr

    root = tmp_path_factory.mktemp("gsv3d")
    data = write_orbit_dataset(root / "data", 4, ring=4, novel=2, size=32, shard_size=3)
    prior = save_tiny_sd(root, camera=True)
    tr.train_generator(data, root / "gen_run", tr.GeneratorTrainConfig(steps=2, batch=2), prior, show_progress=False)
    tr.export_generator(root / "gen_run", prior, root / "gen")
    dec_cfg = tr.DecoderTrainConfig(steps=2, batch=2, ring_views=1, novel_views=1, decoder=TINY_DECODER)
    tr.train_decoder(data, root / "dec_run", dec_cfg, load_generator(root / "gen"), "gen", show_progress=False)
    tr.export_decoder(root / "dec_run", root / "dec")
    lora_cfg = geo.LoraTrainConfig(steps=2, rank=2, ring_views=1, novel_views=1)
    geo.train_lora(data, root / "lora_run", lora_cfg, load_generator(root / "gen"), load_decoder(root / "dec"),
                   {"generator": "gen", "decoder": "dec"}, show_progress=False)
    geo.export_lora(root / "lora_run", load_generator(root / "gen"), root / "lora")
    return {"root": root, "data": data, "prior": prior, "gen": root / "gen", "dec": root / "dec", "lora": root / "lora"}
