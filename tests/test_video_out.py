"""Where `v3kd render --out` writes (export/video.py): .mp4 / .gif are videos, any other name a folder of PNG
frames (a dot in a folder's name included), image and other video suffixes a one-line error; nothing is left
behind on refusal."""

from __future__ import annotations

import numpy as np
import pytest

from vision3d_kd.errors import ConfigError
from vision3d_kd.export.video import write_video

FRAMES = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]


@pytest.mark.parametrize("name", ["frames", "house-validation+generate.box_heads=true", "run-1.5"])
def test_a_name_without_a_video_suffix_is_a_folder_of_frames(tmp_path, name) -> None:
    out = tmp_path / name
    write_video(FRAMES, out, fps=10)
    pngs = sorted(p.name for p in out.iterdir())
    assert pngs == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]


@pytest.mark.parametrize("name", ["orbit.gif", "orbit.GIF"])
def test_a_gif_is_written(tmp_path, name) -> None:
    import imageio.v2 as imageio

    write_video(FRAMES, tmp_path / name, fps=10)
    assert len(imageio.mimread(tmp_path / name)) == 3


@pytest.mark.parametrize("name", ["orbit.png", "orbit.avi", "orbit.MOV", "orbit.webm"])
def test_other_media_suffixes_are_refused(tmp_path, name) -> None:
    with pytest.raises(ConfigError, match="unsupported output"):
        write_video(FRAMES, tmp_path / name, fps=10)
    assert list(tmp_path.iterdir()) == []
