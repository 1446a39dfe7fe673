"""``spantune data build / split / stats`` end to end on small sources written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from spantune.cli import main
from spantune.data.hygiene import normalize
from spantune.io import sha256_file
from spantune.schema import read_jsonl

from data_samples import CLEAN_SENTENCES, M2

GOLDEN = [
    {"id": "g1", "ctx_before": "In the end the committee has decided to ", "span_in": "postpone", "ctx_after": " the meeting until May.",
     "span_out": "postpone", "tags": ["noop"]},
    {"id": "g2", "ctx_before": "I ", "span_in": "beleive", "ctx_after": " that everyone deserves a second chance.",
     "span_out": "believe", "tags": ["typo"]},
]
TSV = ("He go to school every day.\tHe goes to school every day.\n"
       "I dont like it when it rain.\tI don't like it when it rains.\n"
       "We was happy to see you yesterday.\tWe were happy to see you yesterday.\n"
       "She have a cat and two dog.\tShe has a cat and two dogs.\n"
       "They arrived to the station at noon.\tThey arrived at the station at noon.\n"
       "My sister is interested on music.\tMy sister is interested in music.\n")


def _config(tmp_path: Path, **changes) -> Path:
    (tmp_path / "toy.m2").write_text(M2, encoding="utf-8")
    (tmp_path / "toy.tsv").write_text(TSV, encoding="utf-8")
    # The clean text holds a golden sentence: decontamination must drop it.
    clean = CLEAN_SENTENCES + ["In the end the committee has decided to postpone the meeting until May."]
    (tmp_path / "clean.txt").write_text("\n".join(clean) + "\n", encoding="utf-8")
    (tmp_path / "golden.jsonl").write_text("".join(json.dumps(g) + "\n" for g in GOLDEN), encoding="utf-8")
    cfg = {
        "seed": 5, "golden": str(tmp_path / "golden.jsonl"),
        "real_sources": [
            {"name": "toy-m2", "format": "m2", "path": str(tmp_path / "toy.m2"), "license": "test"},
            {"name": "toy-tsv", "format": "tsv", "path": str(tmp_path / "toy.tsv"), "license": "test"},
        ],
        "clean_sources": [{"name": "clean", "path": str(tmp_path / "clean.txt"), "license": "test"}],
        "real": {"eval_fraction": 0.3},
        "synthetic": {"examples": 150, "eval_fraction": 0.1},
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            cfg.setdefault(section, {})[name] = value
        else:
            cfg[key] = value
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_build_is_clean_complete_and_byte_identical(tmp_path, errant_aligner, capsys):
    config = _config(tmp_path)
    assert main(["data", "build", "--config", str(config), "--out", str(tmp_path / "a")]) == 0
    assert main(["data", "build", "--config", str(config), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "examples/s" in out and "near_duplicate" in out
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(f"{n}{suffix}" for n in ("train", "eval", "eval_synth")
                           for suffix in (".jsonl", ".jsonl.manifest.json", ".stats.png"))
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    train = read_jsonl(tmp_path / "a" / "train.jsonl")
    manifest = json.loads((tmp_path / "a" / "train.jsonl.manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(tmp_path / "a" / "train.jsonl")
    assert manifest["examples"] == len(train) and manifest["seed"] == 5
    assert {s["name"]: s["license"] for s in manifest["sources"]} == {"toy-m2": "test", "toy-tsv": "test", "clean": "test"}
    assert manifest["report"]["removed_from_train"]["contaminated_sentence_groups"] >= 1

    sources = {ex.source for ex in train}
    assert {"synthetic", "noop", "adversarial"} <= sources and sources & {"toy-m2", "toy-tsv"}
    assert 0.08 <= sum(ex.is_noop for ex in train) / len(train) <= 0.25
    golden_text = normalize("In the end the committee has decided to postpone the meeting until May.")
    for ex in train:
        assert len(ex.ctx_before) <= 60 and len(ex.ctx_after) <= 60
        assert ex.span_in == ex.span_in.strip() and ex.span_out == ex.span_out.strip()
        assert ex.source == "adversarial" or len(ex.span_in.split()) <= 6
        assert normalize(ex.ctx_before + ex.span_out + ex.ctx_after) not in golden_text
        assert "committee has decided" not in ex.ctx_before + ex.span_in + ex.ctx_after
    train_groups = {ex.extra["group"] for ex in train}
    eval_groups = {ex.extra["group"] for ex in read_jsonl(tmp_path / "a" / "eval.jsonl")}
    assert eval_groups and not train_groups & eval_groups

    # Another seed gives another dataset.
    assert main(["data", "build", "--config", str(config), "--out", str(tmp_path / "c"), "--seed", "6"]) == 0
    assert (tmp_path / "c" / "train.jsonl").read_bytes() != (tmp_path / "a" / "train.jsonl").read_bytes()


@pytest.mark.parametrize("change, expected", [
    ({"synthetic__operators": {"typo_keyboard": 1.0, "teleport": 0.5}}, "config key synthetic.operators.teleport: unknown operator"),
    ({"noop_fraction": 0.95}, "config key noop_fraction + adversarial_fraction"),
    ({"spans__length_weights": {9: 1.0}}, "config key spans.length_weights.9"),
    ({"surprise": 1}, "unknown config key surprise"),
])
def test_bad_config_is_one_line_naming_the_key_and_writes_nothing(tmp_path, capsys, change, expected):
    config = _config(tmp_path, **change)
    assert main(["data", "build", "--config", str(config), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_source_names_file_and_line_and_writes_nothing(tmp_path, capsys):
    config = _config(tmp_path)
    (tmp_path / "toy.m2").write_text(M2 + "\nS Broken .\nA 0 1|||R:X|||y\n", encoding="utf-8")
    assert main(["data", "build", "--config", str(config), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"spantune: error: {tmp_path / 'toy.m2'}:14: M2: expected 6 '|||'-separated fields, got 3"
    assert not (tmp_path / "out").exists()

    missing = _config(tmp_path)
    text = missing.read_text().replace(str(tmp_path / "toy.tsv"), str(tmp_path / "nope.tsv"))
    missing.write_text(text)
    assert main(["data", "build", "--config", str(missing), "--out", str(tmp_path / "out")]) == 1
    assert "config key real_sources[1] (toy-tsv):" in capsys.readouterr().err


def test_split_and_stats_commands(tmp_path, capsys, golden_path):
    assert main(["data", "split", str(golden_path), "--out", str(tmp_path / "s"), "--eval-fraction", "0.25"]) == 0
    train, held = read_jsonl(tmp_path / "s" / "train.jsonl"), read_jsonl(tmp_path / "s" / "eval.jsonl")
    assert len(train) + len(held) == len(read_jsonl(golden_path)) and 0.15 < len(held) / (len(train) + len(held)) < 0.35
    manifest = json.loads((tmp_path / "s" / "eval.jsonl.manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(tmp_path / "s" / "eval.jsonl")

    assert main(["data", "stats", str(golden_path), "--png", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert "no-op share" in out and "punctuation" in out and "ctx_before_chars" in out
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
