"""BEA-2019 JSON sources (FCE, Write & Improve): edits in their essay, skipped kinds, bad input, mixing, licences."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from spantune.cli import main
from spantune.data.bea import clc_tag, document_candidates, edit_clusters, read_bea
from spantune.data.build import build
from spantune.data.config import DataConfig, RealSource
from spantune.data.document import CharEdit, apply_edits
from spantune.errors import InputError, SpantuneError
from spantune.schema import read_jsonl

PARAGRAPH_1 = "I have just recieved the letter. It make me very happy and I want go there."
PARAGRAPH_2 = "We could meet in the centre of town at 5pm. I like the colour of it."
TEXT = f"{PARAGRAPH_1}\n\n{PARAGRAPH_2}"


def _at(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    return start, start + len(needle)


def essay(text: str = TEXT, edits: list | None = None) -> dict:
    """One essay, FCE-style: [annotator, [[start, end, correction, code], …]]."""
    if edits is None:
        edits = [
            [*_at(text, "recieved"), "received", "S"],
            [*_at(text, "make"), "makes", "AGV"],
            [_at(text, "go there")[0], _at(text, "go there")[0], "to ", "MT"],  # insertion touching "want"
            [*_at(text, "want"), "would like", "RV"],
            [*_at(text, "very happy"), None, "R"],           # detection only: skipped
            [*_at(text, "very"), "so", "RY"],                # nested in the detection-only edit's range: kept
            [*_at(text, "5pm"), "5 pm", "RP"],
            [*_at(text, "meet in the centre"), "meet in the center", "SA"],  # American spelling: ignored
            [*_at(text, "I like"), "\nI like", "RP"],                   # a paragraph split: skipped
        ]
    return {"id": "e1", "text": text, "edits": [[0, edits]]}


def write_bea(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_sentences_edits_and_skipped_kinds(tmp_path):
    counts: Counter[str] = Counter()
    pairs = read_bea([write_bea(tmp_path / "a.json", [essay()])], name="toy", counts=counts)
    assert [p.orig.text for p in pairs] == ["I have just recieved the letter.",
                                            "It make me very happy and I want go there.",
                                            "We could meet in the centre of town at 5pm.", "I like the colour of it."]
    assert counts["bea_detection_only"] == 1 and counts["bea_american_spelling_kept"] == 1
    assert counts["bea_correction_has_line_break"] == 1
    # The sentence with an uncorrected (detection-only) error is no clean text; the others are.
    assert [bool(p.corrections) for p in pairs] == [True, False, True, True]
    assert pairs[2].corrections[0].text == "We could meet in the centre of town at 5 pm."
    assert len({p.group for p in pairs}) == 4


def test_candidates_apply_every_other_edit_in_the_paragraph(tmp_path):
    pairs = read_bea([write_bea(tmp_path / "a.json", [essay()])], name="toy", counts=Counter())
    cfg = DataConfig()
    second = document_candidates(pairs[1], cfg, Counter())
    # "want" + the insertion before "go" touch (only a space between): one cluster.
    assert len(second) == 3
    fixed = "I have just received the letter. It makes me so happy and I would like to go there."
    for c in second:
        assert c.text_out == fixed and c.in_document
    make = next(c for c in second if c.tags == ["agreement"])
    assert make.text_in == fixed.replace("makes", "make")  # the other sentence's edit is applied in the context
    cluster = next(c for c in second if c.tags == ["word_choice", "preposition"])
    assert cluster.text_in == fixed.replace("would like to go", "want go")


def test_a_deleted_word_takes_its_space_along(tmp_path):
    """BEA offsets cover the deleted word only; the corrected text must not keep its space ("more  things")."""
    text = "We saw more different things there. Then we left it."
    edits = [[*_at(text, "different"), "", "UJ"],       # mid-sentence: takes the space after it
             [*_at(text, "it"), "", "UN"],              # before the full stop: takes the space before it
             [*_at(text, "saw"), "", "UV"], [_at(text, "more")[0], _at(text, "more")[0], "many ", "MD"],
             [*_at(text, "things"), "stuff", "RN"], [*_at(text, "there"), "", "UY"]]
    counts: Counter[str] = Counter()
    pairs = read_bea([write_bea(tmp_path / "a.json", [essay(text, edits)])], name="toy", counts=counts)
    # "there": the edit of "things" touches its space, so that space stays where the annotator left it.
    assert [p.corrections[0].text for p in pairs] == ["We many more stuff .", "Then we left."]
    assert counts["bea_deletion_took_its_space"] == 3
    spans = [(c.text_in, c.text_out) for c in document_candidates(pairs[0], DataConfig(), Counter())]
    assert ("We many more different things there. Then we left.", "We many more stuff . Then we left.") in spans


def test_clusters_split_when_too_long():
    para = "one two three four five six seven"
    edits = [CharEdit(0, 3, "1", "typo", ""), CharEdit(4, 7, "2 2 2 2 2 2", "typo", "")]
    assert len(edit_clusters(para, edits, 6)) == 2
    assert len(edit_clusters(para, edits[:1] + [CharEdit(4, 7, "2", "typo", "")], 6)) == 1
    assert apply_edits(para, edits[:1]) == "1 two three four five six seven"


@pytest.mark.parametrize(("code", "o", "c", "tag"), [
    ("S", "recieved", "received", "typo"), ("MD", "", "the", "article"), ("RT", "in", "on", "preposition"),
    ("TV", "go", "went", "verb_form"), ("AGV", "make", "makes", "agreement"), ("RP", "i", "I", "capitalization"),
    ("MV", "", "be", "missing_word"), ("UN", "people", "", "extra_word"), ("W", "always I", "I always", "word_order"),
    ("RV", "do", "make", "word_choice"), (None, "dog", "dogs", "noun_number"),
])
def test_clc_codes_map_onto_the_tag_vocabulary(code, o, c, tag):
    assert clc_tag(code, o, c) == tag


@pytest.mark.parametrize(("record", "field"), [
    (essay(edits=[[5, 900, "x", "S"]]), "edits[0][1][0] (offsets)"),
    (essay(edits=[[5, 6, 7, "S"]]), "edits[0][1][0][2] (correction)"),
    (essay(edits=[["5", 6, "x", "S"]]), "edits[0][1][0][0] (start)"),
    ({"id": "e", "text": "Hi.", "edits": [{"annotator": 0}]}, "edits[0]"),
    ({"id": "e", "text": "Hi.", "edits": "none"}, "edits"),
    ({"id": "e", "text": 3, "edits": []}, "text"),
])
def test_bad_records_name_file_line_and_field(tmp_path, record, field):
    path = write_bea(tmp_path / "bad.json", [essay(), record])
    with pytest.raises(InputError) as err:
        read_bea([path], name="toy", counts=Counter())
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 2, field)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(json.dumps(essay()).encode() + b"\n{\"text\": \"caf\xe9\"}\n")
    with pytest.raises(InputError, match=r"bad.json:2: <line>: invalid UTF-8"):
        read_bea([path], name="toy", counts=Counter())


def _config(tmp_path: Path, **top) -> Path:
    records = [essay(), {"id": "e2", "text": "She have two dog. They is nice and they plays a lot.",
                         "edits": [[0, [[4, 8, "has", "AGV"], [13, 16, "dogs", "FN"], [23, 25, "are", "AGV"],
                                        [39, 44, "play", "AGV"]]]]}]
    write_bea(tmp_path / "toy-train.json", records)
    dev = "My brother like football. He play every day after the school."
    write_bea(tmp_path / "toy-dev.json", [{"id": "d1", "text": dev, "edits": [[0, [
        [*_at(dev, "like"), "likes", "AGV"], [*_at(dev, "play"), "plays", "AGV"], [*_at(dev, "the school"), "school", "UD"]]]]}])
    (tmp_path / "golden.jsonl").write_text("", encoding="utf-8")
    cfg = {"seed": 3, "golden": str(tmp_path / "golden.jsonl"), "aligner": "difflib",
           "real_sources": [
               {"name": "toy-train", "format": "bea", "path": str(tmp_path), "files": ["toy-train.json"],
                "license": "NC", "split": "train"},
               {"name": "toy-dev", "format": "bea", "path": str(tmp_path), "files": ["toy-dev.json"],
                "license": "NC", "split": "eval"}],
           "synthetic": {"examples": 20, "eval_fraction": 0.0}, **top}
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_eval_sources_stay_whole_on_the_eval_side(tmp_path):
    out = tmp_path / "out"
    assert main(["data", "build", "--config", str(_config(tmp_path)), "--out", str(out)]) == 0
    train, evals = read_jsonl(out / "train.jsonl"), read_jsonl(out / "eval.jsonl")
    assert {ex.source for ex in evals if ex.source != "noop"} == {"toy-dev"}
    assert "toy-dev" not in {ex.source for ex in train} and "toy-train" in {ex.source for ex in train}
    manifest = json.loads((out / "train.jsonl.manifest.json").read_text())
    assert [(s["name"], s["commercial"], s["split"]) for s in manifest["sources"]] == [
        ("toy-train", False, "train"), ("toy-dev", False, "eval")]


def test_cap_limits_a_source(tmp_path):
    from spantune.config import load_config

    path = _config(tmp_path)
    uncapped = build(load_config(DataConfig, str(path), []), tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["real_sources"][0]["cap"] = 1
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    capped = build(load_config(DataConfig, str(path), []), tmp_path)
    assert sum(ex.source == "toy-train" for ex in uncapped.train) > 1
    assert sum(ex.source == "toy-train" for ex in capped.train) == 1
    assert capped.report["removed_from_train"]["capped:toy-train"] > 0


def test_commercial_only_drops_and_says_what(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "build", "--config", str(_config(tmp_path, commercial_only=True)), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "commercial_only dropped toy-train, toy-dev" in err and not out.exists()


@pytest.mark.parametrize("name", ["fce-test.json", "ABCN.dev.json", "jfleg.test.src"])
def test_measuring_sets_are_refused(tmp_path, name):
    write_bea(tmp_path / name, [essay()])
    cfg = DataConfig(golden="", real_sources=[RealSource(name="x", format="bea", path=str(tmp_path), files=[name])])
    with pytest.raises(SpantuneError, match="hidden measuring set"):
        build(cfg, tmp_path)


def test_bad_input_writes_nothing(tmp_path, capsys):
    cfg = _config(tmp_path)
    write_bea(tmp_path / "toy-dev.json", [essay(edits=[[0, 4000, "x", "S"]])])
    out = tmp_path / "out"
    assert main(["data", "build", "--config", str(cfg), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("toy-dev.json:1: edits[0][1][0] (offsets): offsets 0..4000 outside the "
                            f"{len(TEXT)}-character text") and not out.exists()
