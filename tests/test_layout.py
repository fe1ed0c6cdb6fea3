"""Layouts (LucidDreaming): the file reader (JSON and the paper's lines, bad layouts refused in one line), the
rule-based writer of `--layout-from` and the local-language-model writer of `--llm` (a tiny model)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import one_line_error, run_cli
from vision3d_kd.data.layout import Layout, canvas_box, parse_layout, read_layout
from vision3d_kd.errors import ConfigError


def test_json_and_paper_forms_give_world_boxes(tmp_path):
    lay = parse_layout(json.dumps({"prompt": "a mug by a cube", "objects": [
        {"prompt": " a red mug ", "box": [-1, -1.5, -0.5, 0, -0.5, 0.5]},
        {"prompt": "a blue cube", "box": [0, 0, 0, 1, 1, 1]}]}))
    assert lay.prompt == "a mug by a cube" and lay.objects[0].prompt == "a red mug"
    assert lay.objects[0].centre == (-0.5, -1.0, 0.0) and lay.objects[0].scale == 0.5 and lay.extent() == 1.5
    # the paper's canvas: min corner + extents on 0..512 -> [-2, 2], world = v / 128 - 2
    paper = parse_layout("[('a cow', [156, 106, 200, 200, 200, 150]),\n ('a balloon', [156, 336, 200, 200, 150, 300])]")
    assert [o.prompt for o in paper.objects] == ["a cow", "a balloon"]
    assert paper.objects[0].box == pytest.approx((156 / 128 - 2, 106 / 128 - 2, 200 / 128 - 2, 356 / 128 - 2,
                                                   306 / 128 - 2, 350 / 128 - 2))
    assert canvas_box([0, 0, 0, 512, 512, 512]) == (-2.0, -2.0, -2.0, 2.0, 2.0, 2.0)
    one_per_line = parse_layout("('a cat', [0, 0, 0, 100, 100, 100])\n('a dog', [200.5, 0, 0, 100, 100, 100])\n")
    assert len(one_per_line.objects) == 2 and one_per_line.scene_prompt() == "a cat and a dog"
    # written as JSON and read back: the same layout (overlapping boxes are allowed)
    path = lay.write(tmp_path / "l.json")
    assert read_layout(path) == lay and not list(tmp_path.glob(".*partial"))


BAD = {
    "empty_box.json": ('{"objects": [{"prompt": "a mug", "box": [0, 0, 0, 0, 1, 1]}]}', "empty along x"),
    "inverted_box.json": ('{"objects": [{"prompt": "a mug", "box": [0, 0, 1, 1, 1, 0]}]}', "inverted along z"),
    "unknown_object_key.json": ('{"objects": [{"prompt": "a mug", "box": [0,0,0,1,1,1], "colour": "red"}]}',
                                "'colour'"),
    "unknown_top_key.json": ('{"objects": [{"prompt": "a mug", "box": [0,0,0,1,1,1]}], "scale": 2}', "'scale'"),
    "nan.json": ('{"objects": [{"prompt": "a mug", "box": [0, 0, 0, NaN, 1, 1]}]}', "finite"),
    "infinity.json": ('{"objects": [{"prompt": "a mug", "box": [0, 0, 0, Infinity, 1, 1]}]}', "finite"),
    "string_value.json": ('{"objects": [{"prompt": "a mug", "box": [0, 0, 0, "1", 1, 1]}]}', "numbers"),
    "five_values.json": ('{"objects": [{"prompt": "a mug", "box": [0, 0, 0, 1, 1]}]}', "xmin"),
    "empty_prompt.json": ('{"objects": [{"prompt": "  ", "box": [0, 0, 0, 1, 1, 1]}]}', "prompt is empty"),
    "no_objects.json": ('{"objects": []}', "non-empty"),
    "cut.json": ('{"objects": [{"prompt": "a mug", "box": [0, 0', "not valid JSON"),
    "paper_zero_size.txt": ("[('a cow', [156, 106, 200, 0, 200, 150])]", "empty"),
    "paper_nan.txt": ("[('a cow', [156, 106, 200, nan, 200, 150])]", "6 numbers"),
    "paper_four_values.txt": ("[('a cow', [156, 106, 200, 200])]", "6 numbers"),
    "garbage.txt": ("a cow near a balloon", "not a layout"),
    "paper_trailing_garbage.txt": ("[('a cow', [1, 1, 1, 9, 9, 9]), rm -rf]", "not a layout"),
    "binary.bin": (b"\xff\xfe\x00\x01", "cannot read"),
}


def write_bad(tmp_path, name: str):
    text, _ = BAD[name]
    path = tmp_path / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_layouts_are_refused_in_one_line_by_the_reader_and_both_commands(name, tmp_path, capsys):
    path = write_bad(tmp_path, name)
    with pytest.raises(ConfigError) as err:
        read_layout(path)
    assert BAD[name][1] in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)
    out = tmp_path / "run"
    assert run_cli(["generate", "--layout", str(path), "--out", str(out), "--steps", "1", "--quiet"]) == 2
    one_line_error(capsys, name)
    assert not out.exists()
    assert run_cli(["data", "scene", "--layout", str(path), "--out", str(tmp_path / "scene")]) == 2
    one_line_error(capsys, name)
    assert not (tmp_path / "scene").exists()


def test_a_missing_layout_file_and_mixed_options_are_one_line_errors(tmp_path, capsys):
    assert run_cli(["generate", "--layout", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "nope.json")
    assert run_cli(["generate", "--layout", "x.json", "--layout-from", "a mug", "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "not both")
    assert run_cli(["generate", "--llm", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "--layout-from")
    assert run_cli(["generate", "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "PROMPT")
    assert not (tmp_path / "r").exists()


def boxes(layout: Layout) -> dict[str, tuple]:
    return {o.prompt: o.box for o in layout.objects}


def centre(box, axis: int) -> float:
    return 0.5 * (box[axis] + box[axis + 3])


def test_rules_place_objects_by_their_relations():
    from vision3d_kd.generation.layout_words import layout_from_text

    lay = layout_from_text("A red mug to the left of a green cone, and a yellow ball behind the cone.")
    b = boxes(lay)
    assert len(lay.objects) == 3 and lay.prompt.startswith("A red mug")  # "the cone" is the green cone
    assert centre(b["a red mug"], 1) < centre(b["a green cone"], 1)  # left: smaller y
    assert centre(b["a yellow ball"], 0) < centre(b["a green cone"], 0)  # behind: smaller x (front camera at +x)
    on = layout_from_text("a red mug and a blue cube on a table")
    b = boxes(on)
    for thing in ("a red mug", "a blue cube"):
        assert b[thing][2] == pytest.approx(b["a table"][5])  # resting on its top
        assert b["a table"][1] <= b[thing][1] and b[thing][4] <= b["a table"][4]
    assert b["a red mug"][4] <= b["a blue cube"][1] + 1e-6  # side by side, not inside each other
    two = layout_from_text("two red balls next to a blue cube")
    assert [o.prompt for o in two.objects].count("a red ball") == 2  # counted and made singular
    for each in (lay, on, two):
        assert each.extent() <= 1.9 + 1e-6
        objs = each.objects
        for i in range(len(objs)):
            for j in range(i + 1, len(objs)):
                a, c = objs[i].box, objs[j].box
                assert not all(a[k] < c[k + 3] - 1e-6 and c[k] < a[k + 3] - 1e-6 for k in range(3)), (objs[i], objs[j])
    chain = boxes(layout_from_text("a ball on a cube next to a table"))
    assert chain["a ball"][2] == pytest.approx(chain["a cube"][5]) and chain["a cube"][2] == chain["a table"][2]


@pytest.mark.parametrize("text,word", [
    ("", "empty"), ("a ball next to a cube and the cube next to the ball", "circle"),
    ("three oranges in a box", "'in'"), ("a ball on", "no object"), ("it on a table", "refers to nothing"),
    ("8 balls and a cube", "at most"),
])
def test_rules_refuse_what_they_cannot_place(text, word):
    from vision3d_kd.generation.layout_words import layout_from_text

    with pytest.raises(ConfigError) as err:
        layout_from_text(text)
    assert word in str(err.value) and "\n" not in str(err.value)


def tiny_causal_lm(path, answer: str | None, steps: int = 80):
    """A 2-layer GPT-2 with a character tokenizer saved at `path`; trained to continue `layout_prompt` of
    'a mug next to a ball' with `answer` when given (else left random)."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from vision3d_kd.generation.layout_llm import EXAMPLES, INSTRUCTION, layout_prompt

    text = layout_prompt("a mug next to a ball") + " " + (answer or "") + "\n"
    chars = sorted(set(text + INSTRUCTION + "".join(s + a for s, a in EXAMPLES)))
    vocab = {c: i for i, c in enumerate(["<eos>", *chars])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), "isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", unk_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=2048, n_embd=48, n_layer=2, n_head=2,
                                       eos_token_id=0, bos_token_id=0))
    if answer is not None:
        ids = tok(text, return_tensors="pt")["input_ids"]
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            loss = model(ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_local_language_model_writes_the_layout_and_a_bad_answer_is_one_line(tmp_path):
    from vision3d_kd.generation.layout_llm import layout_from_llm

    answer = "[('a mug', [156, 56, 0, 200, 200, 200]), ('a ball', [156, 256, 0, 200, 200, 200])]"
    lm = tiny_causal_lm(tmp_path / "lm", answer)
    lay = layout_from_llm("a mug next to a ball", lm)
    assert lay.objects == parse_layout(answer).objects and lay.prompt == "a mug next to a ball"
    with pytest.raises(ConfigError) as err:  # an untrained model writes no layout
        layout_from_llm("a mug next to a ball", tiny_causal_lm(tmp_path / "random", None), max_new_tokens=40)
    assert "language model's answer" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        layout_from_llm("a mug", tmp_path / "missing")
