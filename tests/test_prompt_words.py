"""What the bundled prior understands (guidance/prompt_words.py): synonyms, word order, parts, shades and view
suffixes become the prior's own captions; unknown words and impossible requests are refused in one line by
`v3kd generate` with nothing written; `v3kd prior vocab` lists the mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import one_line_error, run_cli
from vision3d_kd.data.objects import COLOURS, FAMILIES, NOUNS, ObjectSpec, caption
from vision3d_kd.generation.run import prompt_for_prior
from vision3d_kd.guidance.prompt_words import COLOUR_WORDS, FAMILY_WORDS, understand


@pytest.mark.parametrize("prompt, expected", [
    ("a yellow torus", "a yellow donut"),
    ("a torus that is yellow", "a yellow donut"),
    ("A Yellow-Coloured Doughnut", "a yellow donut"),
    ("yellow ring", "a yellow donut"),
    ("a light green snowman", "a green snowman"),
    ("a grey coffee cup", "a gray mug"),
    ("a red sphere, back view", "a red ball, back view"),
    ("a red cylindrical object", "a red cylinder"),
    ("a round thing that is teal", "a cyan ball"),
    ("an orange cottage with a blue roof", "a orange house with a blue roof"),
    ("a house with a roof that is blue and orange walls", "a orange house with a blue roof"),
    ("a purple house with a pink roof", "a purple house with a pink roof"),
    ("a blue-roofed house", "a gray house with a blue roof"),
    ("red-capped mushroom", "a mushroom with a red cap"),
    ("a toadstool with a scarlet top", "a mushroom with a red cap"),
    ("a red cube with a blue top", None),
    ("a green mushroom", "a mushroom with a green cap"),
    ("a toadstool with a red cap", "a mushroom with a red cap"),
    ("a crimson desk", "a red table"),
    ("two blue boxes", None),
    ("an orange house with a white roof", "a orange house with a white roof"),
    ("a jet-black ball", "a black ball"),
    ("an ivory coffee mug", "a white mug"),
    ("a rosy snowman", "a pink snowman"),  # -ish / -y colour words
    ("a reddish ball", "a red ball"),
    ("a bluish coffee cup", "a blue mug"),
    ("a purplish cone", "a purple cone"),
    ("a silvery cube", "a gray cube"),
    ("a pinkish house with a brownish roof", "a pink house with a brown roof"),
    ("a shiny ball", None),  # not a colour word
    ("please make me a red ball", "a red ball"),  # the request around the prompt
    ("can you generate a blue chair", "a blue chair"),
    ("a blood-red cube", "a red cube"),  # a compound colour: the colour it ends in
    ("a sky-blue cottage with a jet-black roof", "a blue house with a black roof"),
    ("a dark-green coffee mug", "a green mug"),
    # closed-class words and contractions, colour and shape compounds, part words (added after test3)
    ("i'd like a green cone", "a green cone"),
    ("let's make a pink mug", "a pink mug"),
    ("it's a purple table", "a purple table"),
    ("a rose-tinted sphere", "a pink ball"),
    ("a teal-coloured cup", "a cyan mug"),
    ("a house whose walls are blue and whose roof is red", "a blue house with a red roof"),
    ("a dice that is red", "a red cube"),
    ("a cone-shaped thing in orange", "an orange cone"),
    ("a chair with red legs", "a red chair"),
    ("a mug with a green handle", "a green mug"),
    ("a snowy cube", "a white cube"),
    ("a house without a roof", None),  # words that change the object stay unknown
    ("a red or blue ball", None),
    ("a ball that isn't red", None),
    ("a cream coloured arrow with a black head", None),  # an arrow has one colour
    ("a snowman with a red roof", None),
    # colour names outside the lexicon: the nearest world colour; compounds by their head (after test4)
    ("a jade pillar", "a green cylinder"),
    ("a chestnut table", "a brown table"),
    ("a hot pink donut", "a pink donut"),
    ("a navy blue mug", "a blue mug"),
    ("a forest green cube", "a green cube"),
    ("a mint coffee cup", "a green mug"),
    ("scarlet armchair", "a red chair"),
    ("a pale green wheelchair", "a green chair"),
    ("an orange snowball", "an orange ball"),
    ("can u make a green cone pls", "a green cone"),  # chat spellings (after test5)
    # after test6: a word before a colour word qualifies it (English puts opinion, size, age and shape before
    # colour, material after it); quantifiers and degree adverbs; contractions without the apostrophe;
    # "w/"; request verbs in every form
    ("a pitch black cone", "a black cone"),
    ("an old red chair", "a red chair"),
    ("a red wooden chair", None),  # material after the colour: unknown
    ("a not red ball", None),  # negations are never read by a rule
    ("a ball that isnt red", None),
    ("a dont red ball", None),
    ("a non-red chair", None),  # a hyphenated negation is not a compound colour ("sky-blue" is)
    ("an un-red chair", None),
    ("an anti-red ball", None),
    ("a ball, all white", "a white ball"),
    ("a really tiny blue cube", "a blue cube"),
    ("make a chair thats green", "a green chair"),
    ("im making a red mug", "a red mug"),
    ("a well red ball", "a red ball"),
    ("a house w/ a red roof", "a gray house with a red roof"),
    ("a house w/o a roof", None),
    ("drawing me a blue cone", "a blue cone"),
    # after test7: interjections and the rest of the pronouns ("hey" was refused)
    ("hey, can I get a violet donut?", "a purple donut"),
    ("ok so how about a red ball for them", "a red ball"),
    ("hi! i'd like something like a green cone", "a green cone"),
    ("a cat wearing a hat", None),  # 'wearing' ends in 'ring' but is no compound of it
    ("a vegetable", None),
])
def test_phrasings_become_the_captions_the_prior_knows(prompt: str, expected: str | None) -> None:
    u = understand(prompt)
    if expected is None:
        assert not u.ok and (u.unknown or u.problems), u
    else:
        assert u.ok and u.caption == expected, u


def test_every_family_and_colour_is_reachable_by_two_words() -> None:
    assert set(FAMILY_WORDS) == set(FAMILIES)
    for family, words in FAMILY_WORDS.items():
        colour = "red"
        spec = ObjectSpec(family, colour, "blue" if family == "house" else None)
        assert len(words) >= 2
        for w in words:
            text = f"a {colour} {w}" + (" with a blue roof" if family == "house" else "")
            assert understand(text).caption == caption(spec), (w, understand(text))
    for colour in COLOURS:
        assert len(COLOUR_WORDS[colour]) >= 2
        for w in COLOUR_WORDS[colour]:
            assert understand(f"a {w} cube").caption == caption(ObjectSpec("cube", colour)), w
    # the world's own nouns (captions say "donut", "ball") are among the words
    assert all(noun in FAMILY_WORDS[f] for f, noun in NOUNS.items())


def test_colour_names_read_as_the_nearest_world_colour_and_said() -> None:
    from vision3d_kd.guidance.colour_names import colour_names, named_colour

    names = colour_names()
    assert len(names) > 900 and set(names.values()) == set(COLOURS)  # every world colour is someone's nearest
    # the world's own names map to themselves (gray aside: the survey's gray is darker than the world's gray
    # albedo, midway to its black; the lexicon reads "gray" before any name is looked up)
    assert all(named_colour(c) == c for c in COLOURS if c != "gray")
    assert named_colour("glass") is None and named_colour("cat") is None
    u = understand("a jade pillar")
    assert u.ok and any("read 'jade' as green" in n for n in u.notes)


def test_words_the_world_cannot_vary_are_read_ignored_and_said() -> None:
    u = understand("a tiny dining table, side view")
    assert u.ok and u.caption == "a gray table, side view"
    assert any("ignored 'tiny', 'dining'" in n for n in u.notes)
    assert not understand("a wooden chair").ok  # a material changes the object: refused, not ignored


def test_defaults_are_filled_in_and_said() -> None:
    u = understand("a torus")
    assert u.ok and u.caption == "a gray donut" and u.notes
    u = understand("a brown house")
    assert u.ok and u.caption == "a brown house with a gray roof" and "roof" in u.notes[0]


@pytest.mark.parametrize("prompt, words", [
    ("a cat wearing a hat", ["cat", "wearing", "hat"]),
    ("a torous", ["torous"]),
    ("a yellow torus on a table", ["on"]),
])
def test_unknown_words_are_named_with_their_neighbours(prompt: str, words: list[str]) -> None:
    u = understand(prompt)
    assert not u.ok and list(u.unknown) == words
    _, notes = prompt_for_prior(prompt, None, allow_unknown_words=True)
    assert notes  # going on anyway is said


@pytest.mark.parametrize("prompt, phrase", [
    ("a cat wearing a hat", "'cat'"),
    ("a torous", "nearest: torus"),
    ("a red and blue ball", "2 colours"),
    ("a ball and a cube", "2 objects"),
    ("a blue cube with a red roof", "no roof on a cube"),
    ("a front view of a ball", "at the end"),
])
def test_generate_refuses_in_one_line_and_writes_nothing(tmp_path: Path, capsys, prompt: str, phrase: str) -> None:
    out = tmp_path / "run"
    assert run_cli(["generate", prompt, "--out", str(out), "--steps", "1"]) == 2
    err = one_line_error(capsys, phrase)
    assert "v3kd prior vocab" in err and "--allow-unknown-words" in err
    assert not out.exists()


def test_other_priors_get_the_prompt_as_typed(tmp_path: Path) -> None:
    assert prompt_for_prior("a cat wearing a hat", tmp_path) == ("a cat wearing a hat", [])
    said, notes = prompt_for_prior("a torus that is yellow", None)
    assert said == "a yellow donut" and notes == ["read as 'a yellow donut'"]


def test_vocab_lists_words_and_what_is_missing(capsys) -> None:
    assert run_cli(["prior", "vocab"]) == 0
    text = capsys.readouterr().out
    for word in ("doughnut", "torus", "grey", "coffee mug", "toadstool", "teal"):
        assert word in text, word
    assert "ebony" in text and "ivory" in text and "not in the bundled prior's world" not in text
    assert "reddish" in text and "sky-blue" in text


def test_a_colour_missing_from_the_world_is_refused_and_listed(monkeypatch, capsys) -> None:
    """COLOUR_WORDS may name colours the world lacks (a prior trained before them): refused, and listed."""
    monkeypatch.delitem(COLOURS, "white")
    u = understand("an orange house with a white roof")
    assert not u.ok and any("no white in its world" in p for p in u.problems)
    assert run_cli(["prior", "vocab"]) == 0
    assert "not in the bundled prior's world: white" in capsys.readouterr().out


def test_the_bundled_prior_reads_every_word_of_its_world() -> None:
    """The shipped tokenizer has every colour, family and noun of data/objects.py as a word of its own, so
    no caption `understand` writes turns into [UNK] (a world grown without retraining the prior fails here)."""
    from vision3d_kd.assets import default_prior_path

    vocab = json.loads((default_prior_path(None) / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    missing = [w for w in (*COLOURS, *FAMILIES, *NOUNS.values()) if w not in vocab]
    assert not missing, f"the bundled prior does not know {missing}: fine-tune it (assets/prior/TRAINING.md)"


def test_phrasings_with_one_caption_make_the_same_run(tmp_path: Path, capsys) -> None:
    """What `bench prompts` relies on to share runs: the run depends on what the prior is given, not on the
    words typed (bundled prior, 3 steps at 32 px)."""
    from safetensors.torch import load_file

    # the end step's lattice work (joining near parts, a 128^3 grid) was 80 % of this test: off, a 32^3 grid
    fast = ["--steps", "3", "--set", "generate.size=32", "--set", "generate.close_gaps=0", "--set",
            "generate.occ_resolution=32", "--no-mesh", "--no-video", "--quiet"]
    for name, prompt in (("a", "a yellow torus"), ("b", "a ring that is yellow")):
        assert run_cli(["generate", prompt, "--out", str(tmp_path / name), *fast]) == 0
    assert "read as 'a yellow donut'" in capsys.readouterr().out
    a, b = (load_file(str(tmp_path / n / "weights.safetensors")) for n in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["prompt"] == "a ring that is yellow" and cfg["prior_prompt"] == "a yellow donut"
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert 0.0 <= metrics["floater_share_after"] <= metrics["floater_share_before"] + 1e-9


def test_bench_prompts_quick_scores_phrasings_and_refuses_unknown_words(tmp_path: Path) -> None:
    from vision3d_kd.bench.prompts import UNKNOWN, run

    result = run(quick=True, steps=3, runs_dir=tmp_path / "runs")
    rows, summary = result["rows"], result["summary"]
    assert len(rows) == 6 and {r["phrasing"] for r in rows} == {"plain", "synonym", "reordered"}
    assert summary["distinct_runs"] == 2  # three phrasings of each object, one caption each
    assert summary["unknown_refused_rate"] == 1.0 and len(UNKNOWN) >= 5
    assert all(0.0 <= r["iou"] <= 1.0 for r in rows)
    assert summary["iou_paraphrase_minus_plain"] == 0.0
    for key in ("floater_share_before", "floater_share_after", "iou_plain", "iou_paraphrase"):
        assert key in summary, key
    assert summary["val_test_disjoint"] is True


def test_prompt_splits_are_disjoint_until_spent(monkeypatch) -> None:
    """No validation object is in an unspent test split; a test object moved into validation shows."""
    from vision3d_kd.bench import prompts

    assert prompts.val_test_disjoint() and set(prompts.SPENT) <= set(prompts.TEST_FILES)
    last = list(prompts.TEST_FILES)[-1]  # as it was before it was run: not yet spent
    monkeypatch.setattr(prompts, "SPENT", tuple(n for n in prompts.SPENT if n != last))
    assert prompts.val_test_disjoint()
    monkeypatch.setattr(prompts, "VALIDATION", [*prompts.VALIDATION, prompts.split_objects(last)[0]])
    assert not prompts.val_test_disjoint()
