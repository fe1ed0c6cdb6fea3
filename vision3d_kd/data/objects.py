"""The procedural object world of the bundled diffusion prior: shape families built from the exact SDF
primitives, named colours, captions with DreamFusion view suffixes, and which part makes a family
view-asymmetric.

World frame: z up, objects inside [-1, 1]^3 resting around the origin. The object's front faces +x,
which is where a camera at azimuth 0 stands (see `cameras_from_spherical`); azimuth grows
counter-clockwise seen from above, so +y appears on the right of a front view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from .sdf import Box, Cone, Cylinder, Primitive, SDFScene, Sphere, Torus

__all__ = ["COLOURS", "FIRST_COLOURS", "FAMILIES", "TWO_COLOUR", "ASYMMETRIC", "ObjectSpec", "build_object", "caption",
           "view_suffix", "HELD_OUT", "NOUNS"]

# linear-RGB albedos. White stays below the white background (shading keeps its silhouette visible) and
# black above zero (its rim still shades); both were added after the first world (FIRST_COLOURS).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10), "green": (0.15, 0.65, 0.20), "blue": (0.12, 0.28, 0.85),
    "yellow": (0.95, 0.82, 0.12), "orange": (0.95, 0.48, 0.08), "purple": (0.55, 0.22, 0.75),
    "pink": (0.95, 0.50, 0.70), "brown": (0.50, 0.30, 0.14), "gray": (0.50, 0.50, 0.52),
    "cyan": (0.10, 0.75, 0.80), "white": (0.90, 0.90, 0.88), "black": (0.05, 0.05, 0.06),
}
FIRST_COLOURS = tuple(COLOURS)[:10]  # the colours of the first world: benchmarks draw from these, unchanged
FAMILIES = ("sphere", "cube", "cylinder", "cone", "torus", "mug", "house", "snowman", "chair", "table",
            "mushroom", "arrow")
TWO_COLOUR = ("house",)  # second colour: the roof
# the part that tells views apart (primitive index in build_object's list) and where it points
ASYMMETRIC = {"mug": "handle", "house": "door", "snowman": "nose", "chair": "back", "arrow": "head"}
# (family, colour) pairs never rendered for training: the prior must compose them (bench / generate)
HELD_OUT = {("mug", "green"), ("cube", "purple"), ("snowman", "red"), ("chair", "blue"), ("arrow", "orange"),
            ("cone", "pink"), ("torus", "cyan"), ("house", "yellow"), ("mushroom", "purple"), ("table", "red")}
NOUNS = {"sphere": "ball", "cube": "cube", "cylinder": "cylinder", "cone": "cone", "torus": "donut"}
_NOSE = COLOURS["orange"]
_DOOR = (0.30, 0.17, 0.07)
_STEM = (0.90, 0.85, 0.70)


@dataclass
class ObjectSpec:
    """One object of the world: family, main colour name, second colour name (TWO_COLOUR families)."""

    family: str
    colour: str
    colour2: str | None = None
    parts: list[str] = field(default_factory=list)  # filled by build_object: a name per primitive

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"unknown object family {self.family!r}; choose from {', '.join(FAMILIES)}")
        for c in (self.colour, self.colour2):
            if c is not None and c not in COLOURS:
                raise ConfigError(f"unknown colour {c!r}; choose from {', '.join(COLOURS)}")
        if (self.family in TWO_COLOUR) != (self.colour2 is not None):
            need = "needed" if self.family in TWO_COLOUR else "unused"
            raise ConfigError(f"{self.family}: a second colour is {need}")


def _legs(x: float, y: float, z: float, hh: float, r: float, c) -> list[Primitive]:
    return [Cylinder(center=(sx * x, sy * y, z), radius=r, half_height=hh, color=c)
            for sx in (-1, 1) for sy in (-1, 1)]


def _parts(spec: ObjectSpec) -> list[tuple[str, Primitive]]:
    c = COLOURS[spec.colour]
    c2 = COLOURS[spec.colour2] if spec.colour2 else c  # house roof
    f = spec.family
    if f == "sphere":
        return [("body", Sphere(radius=0.7, color=c))]
    if f == "cube":
        return [("body", Box(half_size=(0.55, 0.55, 0.55), color=c))]
    if f == "cylinder":
        return [("body", Cylinder(radius=0.5, half_height=0.65, color=c))]
    if f == "cone":
        return [("body", Cone(radius=0.65, height=1.4, color=c))]
    if f == "torus":
        return [("body", Torus(major=0.58, minor=0.24, color=c))]
    if f == "mug":  # handle on +y: right of a front view
        return [("body", Cylinder(radius=0.45, half_height=0.5, color=c)),
                ("handle", Torus(center=(0.0, 0.47, 0.0), major=0.27, minor=0.08, axis="x", color=c))]
    if f == "house":  # door on the front (+x)
        return [("body", Box(center=(0.0, 0.0, -0.25), half_size=(0.5, 0.5, 0.42), color=c)),
                ("roof", Cone(center=(0.0, 0.0, 0.47), radius=0.78, height=0.62, color=c2)),
                ("door", Box(center=(0.51, 0.0, -0.4), half_size=(0.03, 0.16, 0.27), color=_DOOR))]
    if f == "snowman":  # carrot nose pointing to the front (+x)
        return [("body", Sphere(center=(0.0, 0.0, -0.4), radius=0.48, color=c)),
                ("head", Sphere(center=(0.0, 0.0, 0.32), radius=0.32, color=c)),
                ("nose", Cone(center=(0.44, 0.0, 0.34), radius=0.09, height=0.34, axis="x", color=_NOSE))]
    if f == "chair":  # backrest at the back (-x)
        return [("seat", Box(center=(0.0, 0.0, -0.05), half_size=(0.45, 0.45, 0.06), color=c)),
                *[("leg", p) for p in _legs(0.38, 0.38, -0.43, 0.32, 0.05, c)],
                ("back", Box(center=(-0.41, 0.0, 0.42), half_size=(0.04, 0.45, 0.42), color=c))]
    if f == "table":
        return [("top", Box(center=(0.0, 0.0, 0.2), half_size=(0.7, 0.5, 0.05), color=c)),
                *[("leg", p) for p in _legs(0.6, 0.4, -0.25, 0.42, 0.05, c)]]
    if f == "mushroom":
        return [("stem", Cylinder(center=(0.0, 0.0, -0.4), radius=0.18, half_height=0.4, color=_STEM)),
                ("cap", Cone(center=(0.0, 0.0, 0.2), radius=0.7, height=0.6, color=c))]
    # arrow pointing to +y: right of a front view
    return [("shaft", Cylinder(center=(0.0, -0.2, 0.0), radius=0.1, half_height=0.5, axis="y", color=c)),
            ("head", Cone(center=(0.0, 0.52, 0.0), radius=0.28, height=0.45, axis="y", color=c))]


def build_object(spec: ObjectSpec) -> SDFScene:
    """The SDF scene of `spec` (aabb [-1.5, 1.5]^3); spec.parts gets each primitive's part name."""
    named = _parts(spec)
    spec.parts = [n for n, _ in named]
    name = f"{spec.colour} {spec.family}" + (f" / {spec.colour2}" if spec.colour2 else "")
    return SDFScene(name, [p for _, p in named])


def caption(spec: ObjectSpec) -> str:
    """Template caption without the view suffix, e.g. 'a red house with a blue roof'."""
    f, c = spec.family, spec.colour
    if f == "house":
        return f"a {c} house with a {spec.colour2} roof"
    if f == "mushroom":
        return f"a mushroom with a {c} cap"
    article = "an" if c[0] in "aeiou" else "a"
    return f"{article} {c} {NOUNS.get(f, f)}"


def view_suffix(elevation_deg: float, azimuth_deg: float) -> str:
    """DreamFusion's view-dependent prompt suffix: overhead above 60° elevation, else front within 45°
    of azimuth 0, back beyond 135°, side otherwise."""
    if elevation_deg > 60.0:
        return ", overhead view"
    a = abs((azimuth_deg + 180.0) % 360.0 - 180.0)
    if a < 45.0:
        return ", front view"
    if a > 135.0:
        return ", back view"
    return ", side view"
