"""Colour names people use, read as the nearest colour of the bundled prior's world.

The names and their sRGB values are the XKCD colour survey's 949 names and the CSS named colours (as
matplotlib ships them: `matplotlib.colors.XKCD_COLORS`, `CSS4_COLORS`). A name maps to the world colour
(`data.objects.COLOURS`, linear-RGB albedos, compared in sRGB) nearest to it by hue and value (greys by
value), so "jade" reads as green and "chestnut" as brown; the prompt reader says which it chose.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..data.objects import COLOURS

__all__ = ["named_colour", "colour_names"]

GREY_SATURATION = 0.2  # below this saturation a colour is a grey (white, gray, black) ...
DARK = 0.15  # ... and below this value a black
VALUE_WEIGHT = 40.0  # degrees of hue per unit of value difference


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(np.clip(c, 0.0, None), 1 / 2.4) - 0.055)


def _hsv(srgb: np.ndarray) -> np.ndarray:
    """Hue (degrees), saturation and value [N,3] of sRGB colours [N,3] in [0, 1]."""
    mx, mn = srgb.max(1), srgb.min(1)
    d = np.where(mx - mn > 1e-9, mx - mn, 1.0)
    r, g, b = srgb.T
    h = np.where(mx == r, (g - b) / d % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60.0
    return np.stack([h, np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1.0), 0.0), mx], axis=1)


@lru_cache(maxsize=1)
def colour_names() -> dict[str, str]:
    """Every known colour name (lower case, single spaces) -> the nearest world colour; {} without matplotlib."""
    try:
        from matplotlib.colors import CSS4_COLORS, XKCD_COLORS, to_rgb
    except ImportError:  # pragma: no cover - matplotlib is a dependency; the reader still works without names
        return {}
    names = dict(CSS4_COLORS)  # the survey's sense of a name wins over CSS's (CSS "brown" is a dark red)
    names.update({k.removeprefix("xkcd:"): v for k, v in XKCD_COLORS.items()})
    keys = sorted(names)
    hsv = _hsv(np.array([to_rgb(names[k]) for k in keys]))
    world = list(COLOURS)
    world_hsv = _hsv(_linear_to_srgb(np.array([COLOURS[c] for c in world])))
    nearest = [world[_nearest(row, world_hsv)] for row in hsv]
    return {" ".join(k.split()): c for k, c in zip(keys, nearest, strict=True)}


def _nearest(hsv: np.ndarray, world_hsv: np.ndarray) -> int:
    """Index of the world colour nearest to one colour (hue in degrees, saturation, value): a grey
    (saturation < GREY_SATURATION, or value < DARK) is matched among the greys by value; any other colour
    among the chromatic ones by hue difference plus VALUE_WEIGHT degrees per unit of value difference
    (brown is a dark orange)."""
    grey = (world_hsv[:, 1] < GREY_SATURATION) | (world_hsv[:, 2] < DARK)
    if hsv[1] < GREY_SATURATION or hsv[2] < DARK:
        cost = np.where(grey, np.abs(world_hsv[:, 2] - hsv[2]), np.inf)
    else:
        dh = np.abs((world_hsv[:, 0] - hsv[0] + 180.0) % 360.0 - 180.0)
        cost = np.where(grey, np.inf, dh + VALUE_WEIGHT * np.abs(world_hsv[:, 2] - hsv[2]))
    return int(np.argmin(cost))


def named_colour(phrase: str) -> str | None:
    """The world colour nearest to the colour named `phrase` ("jade" -> "green"), None if it names none."""
    return colour_names().get(" ".join(phrase.lower().split()))
