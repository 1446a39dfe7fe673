"""Adversarial spans: every kind is drawn, spans come back as written (or with one swapped pair fixed)."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from spantune.data import adversarial
from spantune.data.adversarial import KINDS, PHRASES, AdversarialCut, adversarial_example
from spantune.data.align import Parsed
from spantune.data.spelling_variants import PAIRS, is_spelling_variant, other_spelling

CLEAN = [Parsed("The bus was late again this morning."), Parsed("We met at the station and walked home together.")]


def _spans(kind: str) -> set[str]:
    """What a span of ``kind`` may hold: each phrase, or the marked part of each sentence."""
    marked = [re.search("⟦(.*)⟧", entry) for entry in PHRASES[kind]]
    return {m.group(1) if m else entry for m, entry in zip(marked, PHRASES[kind])}


def _draws(n: int, typo_rate: float = 0.3, clean: list[Parsed] = CLEAN) -> list[tuple[AdversarialCut, bool]]:
    return [adversarial_example(random.Random(k), clean, typo_rate, 60) for k in range(n)]


def test_every_kind_is_drawn_and_recorded():
    draws = _draws(400)
    kinds = Counter(cut.kind for cut, _ in draws)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 15, kinds
    for cut, _ in draws:
        assert cut.span_out in _spans(cut.kind), cut
    assert {"instruction", "code", "address", "foreign", "emphasis", "emoji", "spelling", "number"} <= set(KINDS)


def test_marked_sentences_and_spelling_entries_are_well_formed():
    for kind, entries in PHRASES.items():
        for entry in entries:
            assert entry.count("⟦") == entry.count("⟧") <= 1 and entry == entry.strip(), entry
    for span in _spans("spelling"):
        assert any(other_spelling(w) for w in span.split()), span
    spelled = [other_spelling(w) for span in _spans("spelling") for w in span.split()]
    assert "color" in spelled and "colour" in spelled  # British and American both appear, both kept


@pytest.mark.parametrize("clean", [CLEAN, []], ids=["clean-carriers", "frames-only"])
def test_spans_unchanged_unless_typo_and_a_typo_is_one_swap(clean):
    draws = _draws(600, typo_rate=0.5, clean=clean)
    typos = 0
    for cut, typo in draws:
        assert cut.span_in == cut.span_in.strip() and cut.span_in
        assert len(cut.ctx_before) <= 60 and len(cut.ctx_after) <= 60
        if not typo:
            assert cut.span_in == cut.span_out, cut
            continue
        typos += 1
        assert cut.kind != "foreign"
        diff = [i for i, (a, b) in enumerate(zip(cut.span_in, cut.span_out)) if a != b]
        assert len(cut.span_in) == len(cut.span_out) and len(diff) == 2 and diff[1] == diff[0] + 1, cut
        i = diff[0]
        assert cut.span_in[i:i + 2] == cut.span_out[i + 1] + cut.span_out[i], cut
    assert typos >= 30
    # Emoji end sentences too, with the span taking them in.
    assert any(cut.kind == "emoji" and not cut.ctx_after for cut, _ in draws)


def test_same_seed_same_examples():
    assert _draws(50) == _draws(50)
    assert _draws(50) != [adversarial_example(random.Random(k + 1000), CLEAN, 0.3, 60) for k in range(50)]


def test_typo_never_turns_british_into_american(monkeypatch):
    # centre → center is one swap away: that is a respelling, not a typo to fix.
    monkeypatch.setattr(adversarial, "KINDS", ("spelling",))
    monkeypatch.setattr(adversarial, "PHRASES", {"spelling": ("We met at the ⟦centre⟧ after work.",)})
    seen = set()
    for cut, typo in _draws(200, typo_rate=1.0):
        seen.add(cut.span_in)
        assert typo == (cut.span_in != "centre")
        assert not is_spelling_variant(cut.span_in, cut.span_out)
    assert {"centre", "cnetre", "cetnre", "cenrte"} == seen


@pytest.mark.parametrize("a, b", [("colour", "color"), ("Colours", "colors"), ("organised", "organized"),
                                  ("organising", "organizing"), ("organisation", "organization"),
                                  ("centres", "centers"), ("travelled", "traveled"), ("GREY", "gray"),
                                  ("analyse", "analyze"), ("defence", "defense"), ("programme", "program")])
def test_spelling_variants_both_ways(a, b):
    assert is_spelling_variant(a, b) and is_spelling_variant(b, a)


def test_spelling_variants_are_only_variants():
    assert not is_spelling_variant("four", "for") and not is_spelling_variant("colour", "colour")
    assert other_spelling("house") is None
    assert 55 <= len(PAIRS) and len({gb for gb, _ in PAIRS}) == len(PAIRS)
