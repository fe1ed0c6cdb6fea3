"""The words the bundled prior understands: its object families and colours under the words people type.

The bundled prior was trained on template captions of a small world (`data.objects`: "a yellow donut", "a red
house with a blue roof", "a mushroom with a green cap"). `understand(prompt)` reads a free prompt — synonyms
("torus", "doughnut", "ring"), word order ("a torus that is yellow"), hyphenated forms ("a yellow-coloured
torus"), articles, shades ("light green"), a trailing view suffix — into the world's object and the exact
caption the prior knows. Words it cannot place are listed with the nearest words it knows, so a prompt the
prior cannot understand is told apart from a bug. Mapping (`FAMILY_WORDS`, `COLOUR_WORDS`) is documented in
README ("What the bundled prior understands") and printed by `v3kd prior vocab`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..data.objects import COLOURS, TWO_COLOUR, ObjectSpec, caption
from .colour_names import named_colour
from .word_classes import FILLERS, NEGATING_PREFIXES, contraction, negation

__all__ = ["FAMILY_WORDS", "COLOUR_WORDS", "SHADES", "SHAPE_ADJECTIVES", "Understood", "understand",
           "nearest", "refusal", "vocabulary_lines", "DEFAULT_COLOUR",
           "DEFAULT_ROOF"]

# family -> the words and phrases that name it (the first is the world's own name)
FAMILY_WORDS: dict[str, tuple[str, ...]] = {
    "sphere": ("sphere", "ball", "orb", "globe"),
    "cube": ("cube", "box", "block", "dice"),
    "cylinder": ("cylinder", "tube", "column", "pillar"),
    "cone": ("cone", "traffic cone", "ice cream cone"),
    "torus": ("torus", "donut", "doughnut", "ring", "toroid"),
    "mug": ("mug", "cup", "coffee mug", "coffee cup", "teacup", "tea cup"),
    "house": ("house", "home", "cottage", "hut", "cabin"),
    "snowman": ("snowman", "snow man", "snowperson"),
    "chair": ("chair", "seat", "dining chair"),
    "table": ("table", "desk", "tabletop"),
    "mushroom": ("mushroom", "toadstool", "fungus"),
    "arrow": ("arrow", "pointer"),
}
# adjectives of shape, valid with a generic noun: "a red cylindrical object"
SHAPE_ADJECTIVES = {"spherical": "sphere", "round": "sphere", "cubic": "cube", "cubical": "cube",
                    "cylindrical": "cylinder", "conical": "cone", "toroidal": "torus"}
GENERIC_NOUNS = ("object", "shape", "thing", "solid", "model")
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "lime"),
    "blue": ("blue", "azure", "navy", "cobalt"),
    "yellow": ("yellow", "golden", "gold", "lemon"),
    "orange": ("orange", "tangerine", "amber"),
    "purple": ("purple", "violet", "lilac", "lavender"),
    "pink": ("pink", "rose", "magenta"),
    "brown": ("brown", "chocolate", "tan"),
    "gray": ("gray", "grey", "silver"),
    "cyan": ("cyan", "turquoise", "teal", "aqua"),
    "white": ("white", "ivory", "snow white", "snow", "cream"),
    "black": ("black", "jet black", "ebony"),
}
SHADES = ("light", "dark", "bright", "pale", "deep", "vivid")  # accepted; the world has one shade per colour
# a colour beside a part word colours that part: its word -> the part, and each family's parts -> what they
# colour ("body": the object's own colour; a mushroom's stem is fixed, so its cap is its colour)
PARTS = {"roof": "roof", "roofed": "roof", "cap": "cap", "capped": "cap", "top": "top", "walls": "walls",
         "wall": "walls", "walled": "walls", "backrest": "back", "back rest": "back", "legs": "legs", "leg": "legs",
         "legged": "legs", "handle": "handle", "handled": "handle", "tip": "tip", "head": "head"}
# each family's parts -> what a colour on them colours ("body": the whole one-colour object)
PARTS_OF = {"house": {"roof": "roof", "top": "roof", "walls": "body"}, "mushroom": {"cap": "body", "top": "body"},
            "chair": {"back": "body", "legs": "body"}, "table": {"top": "body", "legs": "body"},
            "mug": {"handle": "body"}, "arrow": {"tip": "body", "head": "body"}}
# nouns that head English compounds naming the same thing (armchair, wheelchair, snowball, football, teacup,
# lighthouse, pinecone, icecube)
COMPOUND_HEADS = {"chair": "chair", "ball": "sphere", "cup": "mug", "house": "house", "cone": "cone",
                  "cube": "cube"}
# words the world cannot vary (one size, style and purpose per object): read, ignored and said so
IGNORED = ("little", "small", "big", "large", "tiny", "huge", "giant", "mini", "miniature", "cute", "simple",
           "basic", "nice", "pretty", "lovely", "beautiful", "cool", "classic", "regular", "normal", "standard",
           "ordinary", "plain", "dining", "kitchen", "office", "garden")
VIEWS = ("front", "side", "back", "overhead")
DEFAULT_COLOUR = "gray"  # a prompt that names no colour
DEFAULT_ROOF = {"brown": "gray"}  # a house whose roof has no colour: brown, or gray on a brown house


@dataclass(frozen=True)
class Understood:
    """What a prompt means to the bundled prior: ``spec`` the world's object (None when it names none),
    ``caption`` the prior's own caption (+ the prompt's view suffix), ``unknown`` words it cannot place,
    ``problems`` one-line reasons it cannot be drawn, ``notes`` defaults that were filled in."""

    spec: ObjectSpec | None
    caption: str
    unknown: tuple[str, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.unknown and not self.problems


def _lexicon() -> dict[tuple[str, ...], tuple[str, str]]:
    """Phrase (tuple of words) -> (kind, value), kind one of family, colour, shade, part, shape, generic,
    filler, view."""
    table: dict[tuple[str, ...], tuple[str, str]] = {}
    for family, words in FAMILY_WORDS.items():
        for w in words:
            table[tuple(w.split())] = ("family", family)
            table[tuple(w.split())[:-1] + (tuple(w.split())[-1] + "s",)] = ("family", family)  # plural
    for colour, words in COLOUR_WORDS.items():
        for w in words:
            table[tuple(w.split())] = ("colour", colour)
    table.update({(w,): ("shade", w) for w in SHADES})
    table.update({tuple(w.split()): ("part", part) for w, part in PARTS.items()})
    table.update({(w,): ("ignored", w) for w in IGNORED})
    table.update({(w,): ("shape", f) for w, f in SHAPE_ADJECTIVES.items()})
    table.update({(w,): ("generic", w) for w in GENERIC_NOUNS})
    table.update({(w,): ("filler", w) for w in FILLERS})
    table.update({(w,): ("view", w) for w in (*VIEWS, "view")})
    return table


LEXICON = _lexicon()
_LONGEST = max(len(k) for k in LEXICON)


def _view_suffix(text: str) -> tuple[str, str]:
    """(prompt without a trailing ", X view", that suffix or "")."""
    m = re.search(r",?\s*\b(front|side|back|overhead)\s+view\s*$", text)
    if not m:
        return text, ""
    return text[:m.start()], f", {m.group(1)} view"


def _derived_colour(word: str) -> tuple[str, str] | None:
    """("colour", c) for a colour word made with -ish, -y or -ey from one the lexicon knows (reddish, bluish,
    purplish, rosy, silvery, orangey), else None."""
    for suffix in ("ish", "ey", "y"):
        if not word.endswith(suffix) or len(word) - len(suffix) < 3:
            continue
        stem = word[: -len(suffix)]
        for base in (stem, stem + "e", stem[:-1] if len(stem) > 3 and stem[-1] == stem[-2] else ""):
            hit = LEXICON.get((base,))
            if hit and hit[0] == "colour":
                return hit
    return None


def _tokens(text: str, notes: list[str] | None = None) -> list[tuple[str, str]]:
    """(kind, value) for each longest phrase of `text` (lower case, hyphens as spaces); kind "unknown" (the
    word as value) for words no phrase holds. Words read by a rule (a colour name as its nearest world
    colour, a compound by its head) are said in `notes`."""
    notes = [] if notes is None else notes
    # a compound colour ("sky-blue", "blood-red"): the colour it ends in, when the first word is not known
    # and does not negate it ("non-red", "un-red", "anti-red" stay as they are, and are refused)
    text = re.sub(r"\b([a-z]+)-([a-z]+)\b", lambda m: m.group(2) if (m.group(1),) not in LEXICON
                  and not negation(m.group(1)) and m.group(1) not in NEGATING_PREFIXES
                  and LEXICON.get((m.group(2),), ("",))[0] == "colour" else m.group(0), text.lower())
    text = re.sub(r"\bw/o\b", " without ", re.sub(r"\bw/(?!o\b)", " with ", text)).replace("&", " and ")
    words = re.findall(r"[a-z0-9']+", text.replace("-", " "))
    out, i = [], 0
    while i < len(words):
        for n in range(min(_LONGEST, len(words) - i), 0, -1):
            hit = LEXICON.get(tuple(words[i:i + n]))
            if hit:
                out.append(hit)
                i += n
                break
        else:
            w, after = words[i], words[i + 1] if i + 1 < len(words) else ""
            hit = _derived_colour(w) or contraction(w) or _named(w) or _compound_family(w)
            if (hit is None and LEXICON.get((after,), ("",))[0] == "colour" and not negation(w)
                    and w not in NEGATING_PREFIXES):
                # before a colour word: the qualifier of a colour name ("hot pink", "navy blue", "pitch
                # black", "pure white"), or by English adjective order (opinion, size, age, shape, then
                # colour; material after it) a word the world does not vary ("an old red chair")
                if not named_colour(f"{w} {after}"):
                    notes.append(f"read {w + ' ' + after!r} as {LEXICON[(after,)][1]}")
                i += 1
                continue
            hit = hit or ("unknown", w)
            if hit[0] == "family":
                notes.append(f"read {w!r} as {hit[1]}")
            out.append(hit if hit[0] != "named" else (*hit, w))
            i += 1
    # a colour name before a colour word qualifies it ("burgundy red"): the colour word decides; the others
    # are read as their nearest colour, and said
    kept = []
    for k, t in enumerate(out):
        if t[0] == "named":
            if k + 1 < len(out) and out[k + 1][0] == "colour":
                continue
            notes.append(f"read {t[2]!r} as {t[1]} (the nearest colour it knows)")
            t = ("colour", t[1])
        kept.append(t)
    return kept


def _named(word: str) -> tuple[str, str] | None:
    """("named", colour) for a colour name outside the lexicon (`colour_names`: "jade" -> green)."""
    colour = named_colour(word)
    return ("named", colour) if colour else None


def _compound_family(word: str) -> tuple[str, str] | None:
    """("family", f) for a compound whose head, its last part, is one of the nouns that head compounds
    (`COMPOUND_HEADS`: "armchair", "snowball", "teacup"); other endings are too often not compounds
    ("wearing", "vegetable")."""
    for head, family in COMPOUND_HEADS.items():
        if word.endswith(head) and len(word) - len(head) >= 3:
            return ("family", family)
    return None



def _bind_parts(tokens: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """({part: colour}, the colours left for the object): a colour right before a part word ("a blue roof"),
    or after it with only fillers between ("a roof that is blue"), colours that part."""
    content = [t for t in tokens if t[0] not in ("filler", "shade")]
    parts: dict[str, str] = {}
    used: set[int] = set()
    for k, (kind, value) in enumerate(content):
        if kind != "part":
            continue
        for j in (k - 1, k + 1):  # before the part word first ("a blue roof"), then after ("roof ... blue")
            if 0 <= j < len(content) and content[j][0] == "colour" and j not in used:
                parts[value] = content[j][1]
                used.add(j)
                break
    rest = [t[1] for k, t in enumerate(content) if t[0] == "colour" and k not in used]
    return parts, rest


def understand(prompt: str) -> Understood:
    """Read `prompt` as the bundled prior's world would (see the module docstring)."""
    body, suffix = _view_suffix(prompt.strip().lower())
    read: list[str] = []
    tokens = _tokens(body, read)
    unknown = tuple(dict.fromkeys(t[1] for t in tokens if t[0] == "unknown"))
    problems, notes = [], []
    families = list(dict.fromkeys(t[1] for t in tokens if t[0] == "family"))
    shapes = list(dict.fromkeys(t[1] for t in tokens if t[0] == "shape"))
    if not families and shapes and any(t[0] == "generic" for t in tokens):
        families = shapes
    if any(t[0] == "view" for t in tokens):
        problems.append("reads a view (front/side/back/overhead view) only at the end, after a comma")
    parts, colours = _bind_parts(tokens)
    colours = list(dict.fromkeys(colours))
    if len(families) != 1:
        problems.append("finds no object it knows" if not families else
                        f"finds {len(families)} objects ({', '.join(families)}) and draws one")
        return Understood(None, "", unknown, tuple(problems), ())
    family = families[0]
    roles: dict[str, str] = {}  # body / roof -> colour
    for part, colour in parts.items():
        role = PARTS_OF.get(family, {}).get(part)
        if role is None:
            problems.append(f"knows no {part} on a {family}")
        else:
            roles[role] = colour
    if "body" in roles:
        colours = list(dict.fromkeys([roles["body"], *colours]))
    if len(colours) > 1:
        article = "an" if family[0] in "aeiou" else "a"
        problems.append(f"finds {len(colours)} colours ({', '.join(colours)}) for {article} {family}, which has one"
                        + (" (and a roof colour: 'a red house with a blue roof')" if family == "house" else ""))
    missing = [c for c in (*colours, *roles.values()) if c not in COLOURS]
    for c in dict.fromkeys(missing):
        problems.append(f"has no {c} in its world (it knows {', '.join(COLOURS)})")
    if problems or unknown:
        return Understood(None, "", unknown, tuple(problems), ())
    notes.extend(dict.fromkeys(read))
    ignored = list(dict.fromkeys(t[1] for t in tokens if t[0] == "ignored"))
    if ignored:
        notes.append(f"ignored {', '.join(map(repr, ignored))}: the bundled prior draws one size and kind of "
                     "each object")
    colour = colours[0] if colours else DEFAULT_COLOUR
    if not colours:
        notes.append(f"no colour named: {colour}")
    colour2 = None
    if family in TWO_COLOUR:
        colour2 = roles.get("roof") or DEFAULT_ROOF.get(colour, "brown")
        if "roof" not in roles:
            notes.append(f"no roof colour named: {colour2}")
        if colour2 == colour:
            notes.append(f"the bundled prior only saw roofs of another colour than the house ({colour})")
    spec = ObjectSpec(family, colour, colour2)
    return Understood(spec, caption(spec) + suffix, (), (), tuple(notes))


def nearest(word: str, n: int = 3) -> list[str]:
    """Up to `n` object, colour, shape or part words closest in spelling to `word`."""
    words = [w for ws in (*FAMILY_WORDS.values(), *COLOUR_WORDS.values()) for w in ws]
    return difflib.get_close_matches(word, [*words, *SHAPE_ADJECTIVES, *PARTS], n=n, cutoff=0.6)


def refusal(prompt: str, understood: Understood) -> str:
    """One line: why the bundled prior cannot draw `prompt`, the nearest known words, and the ways on."""
    parts = []
    if understood.unknown:
        words = []
        for w in understood.unknown:
            near = nearest(w)
            words.append(f"{w!r}" + (f" (nearest: {', '.join(near)})" if near else ""))
        parts.append("does not know " + ", ".join(words))
    parts.extend(understood.problems)
    return (f"{prompt.strip()!r}: the bundled prior " + "; ".join(parts) + ". `v3kd prior vocab` lists what it "
            "knows; --prior PATH takes an open-vocabulary diffusers pipeline; --allow-unknown-words goes on anyway")


def vocabulary_lines() -> list[str]:
    """What `understand` maps, as printed by `v3kd prior vocab`."""
    lines = ["Objects (family: the words that name it):"]
    lines += [f"  {f}: {', '.join(w)}" for f, w in FAMILY_WORDS.items()]
    lines.append("  shape adjectives with object/shape/thing: " + ", ".join(f"{a} ({f})" for a, f in
                                                                          SHAPE_ADJECTIVES.items()))
    lines.append("Colours (colour: the words that name it):")
    lines += [f"  {c}: {', '.join(w)}" for c, w in COLOUR_WORDS.items() if c in COLOURS]
    missing = [c for c in COLOUR_WORDS if c not in COLOURS]
    if missing:
        lines.append(f"  not in the bundled prior's world: {', '.join(missing)}")
    lines.append(f"  shades ({', '.join(SHADES)}) are accepted and drawn as the plain colour; so are -ish/-y "
                 "forms (reddish, rosy, snowy), compounds ending in a colour (sky-blue, blood-red) and "
                 "-coloured/-tinted/-toned forms (rose-tinted)")
    lines.append("Parts: " + "; ".join(f"{f}: {', '.join(sorted({w for w, p in PARTS.items() if p in parts}))}"
                                       for f, parts in PARTS_OF.items()) + " (a colour on the roof of a house "
                 "is its roof colour; on any other part, the object's colour)")
    lines.append("Read and skipped: articles, pronouns, 'is/are/has', 'which/whose', contractions (i'd, that's, "
                 "let's) and the request around a prompt (i want, please make me, can you generate, i'd like)")
    lines.append("Other colour names (the XKCD colour survey's and CSS's, e.g. jade, chestnut, burgundy) read as the "
                 "nearest colour above, and compounds by their last noun (armchair, snowball, teacup); both said")
    lines.append(f"Read, ignored and said (one size and kind per object): {', '.join(IGNORED)}")
    lines.append("Not read (the prompt is refused): words that change the object (not, without, or, on, next "
                 "to), materials (wooden, glass), other objects")
    lines.append("Phrasings: any order, articles and hyphens ('a yellow torus', 'a torus that is yellow', "
                 "'a yellow-coloured doughnut'); parts: 'a red house with a blue roof', 'a house with red walls "
                 "and a blue roof', 'a mushroom with a green cap'; a trailing ', front view' (or side, back, "
                 "overhead) is kept.")
    lines.append(f"Defaults: no colour -> {DEFAULT_COLOUR}; a house without a roof colour -> brown roof "
                 "(gray on a brown house).")
    return lines

