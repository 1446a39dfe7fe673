"""Dedup, decontamination and stratified splits."""

from __future__ import annotations

from collections import Counter

import pytest

from spantune.data.hygiene import contaminated, dedup, normalize
from spantune.data.split import group_of, stratified_split, stratum
from spantune.errors import SpantuneError
from spantune.schema import SpanExample


def ex(before, span_in, after, span_out, tag="typo", group="g", source="s"):
    return SpanExample(before, span_in, after, span_out, tags=[tag], source=source, extra={"group": group})


def test_dedup_counts_each_reason():
    items = [
        ex("I saw the ", "dgo", " in the park yesterday.", "dog"),
        ex("I saw the ", "dgo", " in the park yesterday.", "dog"),        # exact
        ex("I saw the ", "dgo", " in the park yesterday.", "god"),        # same input, other target
        ex("I saw the ", "dgo", " in the park yesterday!", "dog"),        # near duplicate
        ex("We fed the ", "dgo", " before we left for work.", "dog"),     # same span, other context: kept
    ]
    removed: Counter[str] = Counter()
    kept = dedup(items, 95.0, removed)
    assert kept == [items[0], items[4]]
    assert removed == Counter(exact_duplicate=1, conflicting_target=1, near_duplicate=1)


def test_decontamination_flags_near_copies_only():
    protected = ["In the end the committee has decided to postpone the meeting until", "Answer:"]
    texts = [
        "So in the end the committee has decided to postpone the meeting until May.",  # contains it
        "So in the end the commitee had decided to postpone the meeting until May.",   # near copy (2 edits)
        "The committee met on Monday and nobody wanted to postpone anything.",         # shares words only
        "My notes say answer: nothing.",                         # a short window is matched whole only
        "Answer:",
    ]
    assert contaminated(texts, protected, 90.0) == [True, True, False, False, True]
    # A short sentence that sits inside a long window is no copy of it (formulaic learner sentences).
    window = "Dear Sir, I am writing to complain about the show. I look forward to hearing from you."
    assert contaminated(["I am writing to complain about the show.",
                         "Dear Sir, I am writing to complain about the show. I look forward to hearing soon."],
                        [window], 90.0) == [False, True]
    assert contaminated(["I look forward to hearing from you.", "Thanks, and I look forward to hearing from you soon.",
                         "So", "So we went home."], ["i look forward to hearing from you", "So"], 90.0) == [
        True, False, True, False]
    assert normalize("  Hello,  World! ") == "hello world"


def test_stratified_split_keeps_sentences_whole_and_strata_balanced():
    items = []
    for g in range(60):
        tag = ("typo", "article", "punctuation")[g % 3]
        for k in range(3):
            items.append(ex(f"ctx {g} {k} ", "x" if k else "x y z", " after", "y", tag=tag, group=f"s{g}",
                            source=("real", "synthetic")[g % 2]))
    train, held = stratified_split(items, 0.2, seed=1)
    assert len(train) + len(held) == len(items)
    assert not {group_of(e) for e in train} & {group_of(e) for e in held}
    per = Counter(stratum(e) for e in items)
    got = Counter(stratum(e) for e in held)
    for key, n in per.items():
        assert abs(got[key] - 0.2 * n) <= 3, (key, got[key], n)
    assert stratified_split(items, 0.2, seed=1) == (train, held)
    assert stratified_split(items, 0.2, seed=2) != (train, held)
    with pytest.raises(SpantuneError):
        stratified_split(items, 1.5, seed=1)
