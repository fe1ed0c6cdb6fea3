"""Scene layouts (LucidDreaming): each object a prompt and an axis-aligned 3D box, in world units, z up.

Two file forms are read:
- JSON: `{"objects": [{"prompt": "a red mug", "box": [xmin, ymin, zmin, xmax, ymax, zmax]}, ...]}`
  (world units; optional top-level "prompt": the whole scene's sentence);
- the paper's lines, one object per tuple: `('a cow', [x, y, z, w, h, d])` — the min corner and the
  extents on a 0–512 canvas, mapped linearly to [−2, 2] (world = v / 128 − 2; w along x, h along y,
  d along z, which is up), as the LucidDreaming code does.
Boxes may overlap; an empty or inverted box, an unknown key, a non-finite number or an empty prompt is a
ConfigError of one line naming the file and the object.

An object is drawn at a uniform scale into its box: the world's objects fit [−1, 1]³ (`data.objects`), so
an object of scale s = (shortest side) / 2 centred on the box fits inside it (`LayoutObject.scale`).
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from .sdf import SDFScene

__all__ = ["LayoutObject", "Layout", "read_layout", "parse_layout", "canvas_box", "union_box", "placed_scene",
           "CANVAS"]

CANVAS = 512.0  # the paper's canvas side; [0, CANVAS] maps to [-2, 2]
LENGTHS = ("radius", "half_size", "major", "minor", "half_height", "height")  # primitive fields scaled by s


@dataclass(frozen=True)
class LayoutObject:
    """One object: its prompt and box (xmin, ymin, zmin, xmax, ymax, zmax), world units."""

    prompt: str
    box: tuple[float, float, float, float, float, float]

    @property
    def lo(self) -> tuple[float, float, float]:
        return self.box[:3]

    @property
    def hi(self) -> tuple[float, float, float]:
        return self.box[3:]

    @property
    def centre(self) -> tuple[float, float, float]:
        return tuple(0.5 * (a + b) for a, b in zip(self.lo, self.hi, strict=True))  # type: ignore[return-value]

    @property
    def sides(self) -> tuple[float, float, float]:
        return tuple(b - a for a, b in zip(self.lo, self.hi, strict=True))  # type: ignore[return-value]

    @property
    def scale(self) -> float:
        """Uniform scale that puts a [−1, 1]³ object inside the box: half its shortest side."""
        return 0.5 * min(self.sides)

    def aabb(self) -> torch.Tensor:
        """The box as a float32 tensor [2,3]: min corner, max corner."""
        return torch.tensor([self.lo, self.hi], dtype=torch.float32)


@dataclass(frozen=True)
class Layout:
    """Objects of a scene and the sentence it was made from ("" when unknown)."""

    objects: tuple[LayoutObject, ...]
    prompt: str = ""

    def __post_init__(self) -> None:
        if not self.objects:
            raise ConfigError("the layout has no objects")

    def extent(self) -> float:
        """Half side of the smallest origin-centred cube holding every box (world units)."""
        return max(abs(v) for o in self.objects for v in o.box)

    def union(self) -> LayoutObject:
        """The smallest box holding every box, with the scene's sentence as its prompt."""
        return union_box(self.objects, self.scene_prompt())

    def span_scale(self) -> float:
        """Half the longest side of the boxes' union: the factor on a lone object's camera distance that
        frames them all (a lone object has scale 1)."""
        return 0.5 * max(self.union().sides)

    def scene_prompt(self) -> str:
        """The whole scene's sentence, or the object prompts joined with 'and'."""
        return self.prompt or " and ".join(o.prompt for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"objects": [{"prompt": o.prompt, "box": [round(v, 6) for v in o.box]}
                                         for o in self.objects]}
        return {"prompt": self.prompt, **d} if self.prompt else d

    def write(self, path: str | Path) -> Path:
        """Write the JSON form to `path` (atomically: a temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(path)
        return path


def union_box(objects, prompt: str = "") -> LayoutObject:
    """The smallest box holding the boxes of `objects` (LayoutObjects)."""
    lo = [min(o.lo[i] for o in objects) for i in range(3)]
    hi = [max(o.hi[i] for o in objects) for i in range(3)]
    return LayoutObject(prompt, (*lo, *hi))  # type: ignore[arg-type]


def canvas_box(values: list[float]) -> tuple[float, ...]:
    """The paper's [x, y, z, w, h, d] (min corner + extents on the 0–512 canvas) as a world box."""
    x, y, z, w, h, d = values
    lo, size = (x, y, z), (w, h, d)
    to_world = 4.0 / CANVAS
    return (*(v * to_world - 2.0 for v in lo), *((v + s) * to_world - 2.0 for v, s in zip(lo, size, strict=True)))


def _object(raw: Any, where: str) -> LayoutObject:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each object must be {{\"prompt\": ..., \"box\": [6 numbers]}}")
    unknown = sorted(set(raw) - {"prompt", "box"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; an object has prompt and box")
    prompt, box = raw.get("prompt"), raw.get("box")
    if not isinstance(prompt, str):
        raise ConfigError(f"{where}: the prompt must be a string")
    if not isinstance(box, list | tuple) or len(box) != 6:
        raise ConfigError(f"{where}: box must be [xmin, ymin, zmin, xmax, ymax, zmax]")
    return _checked(prompt, box, where)


def _checked(prompt: str, box: Any, where: str) -> LayoutObject:
    if not prompt.strip():
        raise ConfigError(f"{where}: the prompt is empty")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        raise ConfigError(f"{where}: box values must be numbers, got {list(box)}")
    vals = tuple(float(v) for v in box)
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{where}: box values must be finite, got {list(box)}")
    for axis, (a, b) in zip("xyz", zip(vals[:3], vals[3:], strict=True), strict=True):
        if not b > a:
            kind = "empty" if b == a else "inverted"
            raise ConfigError(f"{where} ({prompt.strip()!r}): the box is {kind} along {axis} ({a:g} to {b:g})")
    return LayoutObject(prompt.strip(), vals)  # type: ignore[arg-type]


_LINE = re.compile(r"\(\s*(['\"])(?P<prompt>.*?)\1\s*,\s*\[(?P<values>[^\]]*)\]\s*\)")


def _paper_lines(text: str, name: str) -> Layout:
    """The paper's tuples, anywhere in `text` (a Python list or one per line)."""
    objects = []
    for k, m in enumerate(_LINE.finditer(text)):
        where = f"{name}: object {k + 1}"
        try:
            values = [ast.literal_eval(v.strip()) for v in m.group("values").split(",")]
        except (ValueError, SyntaxError):
            raise ConfigError(f"{where}: the box must be 6 numbers, got [{m.group('values')}]") from None
        if len(values) != 6:
            raise ConfigError(f"{where}: the box must be [x, y, z, w, h, d] (6 numbers), got {len(values)}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}: box values must be numbers, got [{m.group('values')}]")
        if any(v <= 0 for v in values[3:]):
            raise ConfigError(f"{where} ({m.group('prompt').strip()!r}): the box is empty (w, h, d must be > 0)")
        objects.append(_checked(m.group("prompt"), list(canvas_box([float(v) for v in values])), where))
    leftover = _LINE.sub("", text).strip(" \t\r\n[],")
    if leftover or not objects:
        what = f"cannot read {leftover.splitlines()[0][:60]!r}" if leftover else "no objects"
        raise ConfigError(f"{name}: not a layout ({what}); expected JSON {{\"objects\": [...]}} or lines "
                          "('a cow', [x, y, z, w, h, d])")
    return Layout(tuple(objects))


def parse_layout(text: str, name: str = "layout") -> Layout:
    """A Layout from the JSON or paper form (module docstring); `name` labels errors."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            raw = json.loads(stripped, parse_constant=lambda c: float("nan"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{name}: not valid JSON ({e.msg}, line {e.lineno})") from None
        unknown = sorted(set(raw) - {"objects", "prompt"})
        if unknown:
            keys = ", ".join(map(repr, unknown))
            raise ConfigError(f"{name}: unknown key(s) {keys}; a layout has objects and prompt")
        objs = raw.get("objects")
        if not isinstance(objs, list) or not objs:
            raise ConfigError(f"{name}: 'objects' must be a non-empty list")
        prompt = raw.get("prompt", "")
        if not isinstance(prompt, str):
            raise ConfigError(f"{name}: 'prompt' must be a string")
        return Layout(tuple(_object(o, f"{name}: object {k + 1}") for k, o in enumerate(objs)), prompt.strip())
    return _paper_lines(stripped, name)


def read_layout(path: str | Path) -> Layout:
    """The layout in file `path` (JSON or the paper's lines); ConfigError naming the file on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the layout ({getattr(e, 'strerror', None) or e})") from None
    return parse_layout(text, str(path))


def placed_scene(parts: list[tuple[SDFScene, LayoutObject]], name: str = "layout") -> SDFScene:
    """One SDF scene of objects (each in [−1, 1]³) placed at their box centres at their uniform scale
    (`LayoutObject.scale`): world = centre + s · object, every primitive moved and scaled exactly."""
    prims = []
    for scene, obj in parts:
        s, c = obj.scale, obj.centre
        for p in scene.primitives:
            moved = {f.name: getattr(p, f.name) * s for f in fields(p) if f.init and f.name in LENGTHS
                     and not isinstance(getattr(p, f.name), tuple)}
            if hasattr(p, "half_size"):
                moved["half_size"] = tuple(v * s for v in p.half_size)
            moved["center"] = tuple(ci + s * v for ci, v in zip(c, p.center, strict=True))
            prims.append(replace(p, **moved))
    box = union_box([o for _, o in parts])
    pad = 0.05 * max(box.sides)
    return SDFScene(name, prims, (tuple(v - pad for v in box.lo), tuple(v + pad for v in box.hi)))  # type: ignore[arg-type]
