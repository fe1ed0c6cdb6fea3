"""A layout from a sentence, by rules (`v3kd generate --layout-from "a red mug and a blue cube on a table"`).

The sentence is cut at spatial relations — on / on top of / above, next to / beside / near, left of, right
of, behind, in front of — into groups of object phrases joined by 'and' or commas. A relation's subjects are
the group before it (after the first relation: that group's objects other than the one the previous relation
was about; if there is none, that object itself, so "a ball on a cube next to a table" chains) and its anchor
is the first object after it. A count ("two", "3", "a couple of") repeats an object, its phrase made
singular; "the X" or "it" names an object already mentioned.

Placement (world units, z up, the front camera at +x so +y is right and −x is behind): every object gets a
cube box of side 1.2 on the ground; objects without a relation stand in a row from left to right; a subject
goes beside its anchor on the relation's side (next to: right, then left, then behind, then in front),
moving further out past boxes already there; subjects on an anchor share its top, side by side along y,
each at most as wide as its share (above: a half-box gap). The result is centred on the origin and shrunk,
if needed, to fit [−1.9, 1.9]³, the paper's [−2, 2] scene with a margin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..data.layout import Layout, LayoutObject
from ..errors import ConfigError
from ..guidance.prompt_words import understand

__all__ = ["layout_from_text", "RELATIONS", "MAX_OBJECTS"]

SIDE, GAP, FIT = 1.2, 0.2, 1.9
MAX_OBJECTS = 8
RELATIONS = {
    "on top of": "on", "on the top of": "on", "atop": "on", "upon": "on", "on": "on", "above": "above",
    "over": "above", "next to": "next", "beside": "next", "besides": "next", "near": "next", "by the side of": "next",
    "to the left of": "left", "on the left of": "left", "on the left side of": "left", "left of": "left",
    "to the right of": "right", "on the right of": "right", "on the right side of": "right", "right of": "right",
    "behind": "behind", "in back of": "behind", "at the back of": "behind", "in front of": "front",
}
UNSUPPORTED = ("under", "underneath", "beneath", "below", "inside", "in", "between", "around")
COUNTS = {"a": 1, "an": 1, "one": 1, "the": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "a couple of": 2, "a pair of": 2}
# direction (x, y) of each side relation, in the order tried for 'next'
SIDES = {"right": [(0, 1)], "left": [(0, -1)], "behind": [(-1, 0)], "front": [(1, 0)],
         "next": [(0, 1), (0, -1), (-1, 0), (1, 0)]}
_REL = re.compile(r"\b(" + "|".join(sorted(map(re.escape, RELATIONS), key=len, reverse=True)) + r")\b")
_COUNT = re.compile(r"^(" + "|".join(sorted(map(re.escape, COUNTS), key=len, reverse=True)) + r"|\d+)\s+")


@dataclass(eq=False)
class _Obj:
    prompt: str
    head: str  # the phrase without its article, to find "the X" again
    lo: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    hi: list[float] = field(default_factory=lambda: [SIDE, SIDE, SIDE])
    placed: bool = False


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if re.search(r"(ch|sh|x|o|ss)es$", word):
        return word[:-2]
    if word.endswith("s") and not re.search(r"(ss|us|is)$", word):
        return word[:-1]
    return word


def _phrases(group: str, known: list[_Obj], last: _Obj | None) -> list[_Obj]:
    """The objects a group of phrases names: new ones (counts expanded) or ones already mentioned."""
    out: list[_Obj] = []
    for raw in re.split(r",|\band\b", group):
        text = raw.strip()
        if not text:
            continue
        if text in ("it", "them", "that", "this"):
            if last is None:
                raise ConfigError(f"layout: {text!r} refers to nothing before it")
            out.append(last)
            continue
        definite = text.startswith("the ")
        m = _COUNT.match(text + " ")
        word = m.group(1) if m else ""
        count = int(word) if word.isdigit() else COUNTS.get(word, 1)
        head = text[m.end():].strip() if m else text
        if not head:
            raise ConfigError(f"layout: {text!r} names no object")
        if count > 1:
            plural = head
            head = " ".join(_singular(w) for w in head.split())
            if not understand(head).ok and understand(plural).ok:
                head = plural
        if definite:
            same = [o for o in known + out if all(w in o.head.split() or _singular(w) in o.head.split()
                                                   for w in head.split())]
            if same:
                out.append(same[0])
                continue
        for _ in range(count):
            article = "an" if head[0] in "aeiou" else "a"
            out.append(_Obj(f"{article} {head}", head))
    return out


def _overlaps(a: _Obj, others: list[_Obj]) -> bool:
    return any(o is not a and o.placed and all(a.lo[i] < o.hi[i] - 1e-6 and o.lo[i] < a.hi[i] - 1e-6
                                               for i in range(3)) for o in others)


def _move(o: _Obj, lo: list[float], side: float) -> None:
    o.lo, o.hi = list(lo), [v + side for v in lo]


def _beside(o: _Obj, anchor: _Obj, kind: str, objs: list[_Obj]) -> None:
    """Put o on the ground beside `anchor`, on the relation's side, as near as free space allows."""
    for dx, dy in SIDES[kind]:
        for step in range(1, 2 * MAX_OBJECTS):
            cx = 0.5 * (anchor.lo[0] + anchor.hi[0]) + dx * step * (SIDE + GAP)
            cy = 0.5 * (anchor.lo[1] + anchor.hi[1]) + dy * step * (SIDE + GAP)
            _move(o, [cx - SIDE / 2, cy - SIDE / 2, 0.0], SIDE)
            if not _overlaps(o, objs):
                return
            if len(SIDES[kind]) > 1:
                break  # 'next': try the other sides before going further out
    for step in range(2, 2 * MAX_OBJECTS):  # every side taken near it: further out on the first side
        dx, dy = SIDES[kind][0]
        cx = 0.5 * (anchor.lo[0] + anchor.hi[0]) + dx * step * (SIDE + GAP)
        cy = 0.5 * (anchor.lo[1] + anchor.hi[1]) + dy * step * (SIDE + GAP)
        _move(o, [cx - SIDE / 2, cy - SIDE / 2, 0.0], SIDE)
        if not _overlaps(o, objs):
            return


def _on_top(subjects: list[_Obj], anchor: _Obj, gap: float, objs: list[_Obj]) -> None:
    """Put `subjects` side by side (along y) on top of `anchor` (above: `gap` higher)."""
    width = anchor.hi[1] - anchor.lo[1]
    side = min(SIDE, width / len(subjects), anchor.hi[0] - anchor.lo[0])
    top = max([anchor.hi[2]] + [o.hi[2] for o in objs if o.placed and o is not anchor and o not in subjects
                                 and o.lo[0] < anchor.hi[0] and anchor.lo[0] < o.hi[0]
                                 and o.lo[1] < anchor.hi[1] and anchor.lo[1] < o.hi[1]])
    cx = 0.5 * (anchor.lo[0] + anchor.hi[0])
    for k, o in enumerate(subjects):
        cy = anchor.lo[1] + width * (k + 0.5) / len(subjects)
        _move(o, [cx - side / 2, cy - side / 2, top + gap], side)
        o.placed = True


def layout_from_text(text: str) -> Layout:
    """The layout the rules of the module docstring make of `text`; ConfigError for what they cannot read."""
    sentence = re.sub(r"\s+", " ", text.strip().lower()).strip(" .!")
    if not sentence:
        raise ConfigError("layout: the sentence is empty")
    bad = [w for w in UNSUPPORTED if re.search(rf"\b{w}\b", _REL.sub(" ", sentence))]
    if bad:
        raise ConfigError(f"layout: cannot place {bad[0]!r} by rule; say it the other way round (e.g. 'B on A'), "
                          "or write a layout file")
    parts = _REL.split(sentence)
    groups, rels = parts[0::2], [RELATIONS[r] for r in parts[1::2]]
    objs: list[_Obj] = []
    named: list[list[_Obj]] = []
    last = None
    for g in groups:
        found = _phrases(g, objs, last)
        if not found:
            raise ConfigError(f"layout: a relation in {text.strip()!r} has no object on one side")
        objs.extend(o for o in found if o not in objs)
        named.append(found)
        last = found[0]
    if len(objs) > MAX_OBJECTS:
        raise ConfigError(f"layout: {len(objs)} objects; at most {MAX_OBJECTS}")
    links: dict[int, tuple[str, _Obj]] = {}  # id(subject) -> (relation, anchor)
    for i, rel in enumerate(rels):
        subjects = named[i] if i == 0 else (named[i][1:] or named[i][:1])
        for s in subjects:
            if s is named[i + 1][0]:
                raise ConfigError(f"layout: {s.prompt!r} cannot be placed relative to itself")
            links.setdefault(id(s), (rel, named[i + 1][0]))
    _place(objs, links)
    return _fitted(objs, text.strip())


def _place(objs: list[_Obj], links: dict[int, tuple[str, _Obj]]) -> None:
    """Place every object after its anchor (roots in a row), resolving the order; a cycle is an error."""
    row_y = 0.0
    for _ in range(len(objs) + 1):
        pending = [o for o in objs if not o.placed]
        if not pending:
            return
        ready = [o for o in pending if id(o) not in links or links[id(o)][1].placed]
        if not ready:
            raise ConfigError("layout: the relations go round in a circle; "
                              + ", ".join(f"{o.prompt}" for o in pending))
        on_groups: dict[tuple[int, str], list[_Obj]] = {}
        for o in ready:
            if id(o) not in links:
                _move(o, [-SIDE / 2, row_y, 0.0], SIDE)
                while _overlaps(o, objs):
                    row_y += SIDE + GAP
                    _move(o, [-SIDE / 2, row_y, 0.0], SIDE)
                row_y += SIDE + GAP
                o.placed = True
                continue
            rel, anchor = links[id(o)]
            if rel in ("on", "above"):
                on_groups.setdefault((id(anchor), rel), []).append(o)
            else:
                _beside(o, anchor, rel, objs)
                o.placed = True
        for (_, rel), subjects in on_groups.items():
            _on_top(subjects, links[id(subjects[0])][1], 0.5 * SIDE if rel == "above" else 0.0, objs)


def _fitted(objs: list[_Obj], sentence: str) -> Layout:
    """The placed objects centred on the origin and shrunk to fit [−FIT, FIT]³."""
    lo = [min(o.lo[i] for o in objs) for i in range(3)]
    hi = [max(o.hi[i] for o in objs) for i in range(3)]
    centre = [0.5 * (a + b) for a, b in zip(lo, hi, strict=True)]
    shrink = min(1.0, FIT / (0.5 * max(b - a for a, b in zip(lo, hi, strict=True))))
    objects = []
    for o in objs:
        box = [(o.lo[i] - centre[i]) * shrink for i in range(3)] + [(o.hi[i] - centre[i]) * shrink for i in range(3)]
        objects.append(LayoutObject(o.prompt, tuple(round(v, 4) for v in box)))  # type: ignore[arg-type]
    return Layout(tuple(objects), sentence)
