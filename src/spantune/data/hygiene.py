"""Dataset hygiene: exact and near-duplicate removal, conflicting targets, decontamination.

Each step returns what it kept and counts what it removed and why, so the build manifest can say
exactly how the training set was cleaned.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable

from rapidfuzz import fuzz, process

from spantune.schema import SpanExample

_NON_WORD = re.compile(r"[^\w]+")


def normalize(text: str) -> str:
    """Case, width, punctuation and spacing folded away: what near-duplicates share."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_WORD.sub(" ", text).strip()


def window(example: SpanExample, corrected: bool = True) -> str:
    """The text the example shows the model (with the corrected span when ``corrected``)."""
    return example.ctx_before + (example.span_out if corrected else example.span_in) + example.ctx_after


def dedup(examples: Iterable[SpanExample], near_threshold: float, removed: Counter[str]) -> list[SpanExample]:
    """Drop exact duplicates, same-input-different-target conflicts, and near-duplicates (first one wins).

    Near-duplicates share the normalized span pair and have contexts at least ``near_threshold``
    similar (rapidfuzz ratio, 0–100); comparing only within a span pair keeps this fast.
    """
    seen_exact: set[tuple[str, str, str, str]] = set()
    seen_input: set[tuple[str, str, str]] = set()
    near: dict[tuple[str, str], list[str]] = defaultdict(list)
    kept = []
    for ex in examples:
        key = (ex.ctx_before, ex.span_in, ex.ctx_after, ex.span_out)
        if key in seen_exact:
            removed["exact_duplicate"] += 1
            continue
        seen_exact.add(key)
        if key[:3] in seen_input:
            removed["conflicting_target"] += 1
            continue
        seen_input.add(key[:3])
        group = near[(normalize(ex.span_in), normalize(ex.span_out))]
        ctx = normalize(ex.ctx_before) + " | " + normalize(ex.ctx_after)
        if group and process.extractOne(ctx, group, scorer=fuzz.ratio, score_cutoff=near_threshold) is not None:
            removed["near_duplicate"] += 1
            continue
        group.append(ctx)
        kept.append(ex)
    return kept


def _shingles(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))}


def contaminated(texts: list[str], protected: list[str], threshold: float, min_chars: int = 30,
                 ngram: int = 3, copy_chars: int = 50) -> list[bool]:
    """Which ``texts`` (sentences or windows) contain a near copy of any ``protected`` window.

    Long protected windows match by rapidfuzz ``partial_ratio`` ≥ ``threshold`` (a window is a clipped
    piece of a sentence), checked only against texts sharing a word ``ngram`` with it (an inverted
    index: all-pairs fuzzy matching would take minutes). A copy must be at least ``copy_chars`` long, and
    a window shorter than that only matches a text that is a near copy of it as a whole: a formulaic
    sentence ("I look forward to hearing from you") inside an eval window or a training text is no leak,
    and learner essays on the same prompt are full of them.
    Windows shorter than ``min_chars`` only match as an exact normalized substring, since a fuzzy match
    of a few words flags half the corpus.
    """
    norm_texts = [normalize(t) for t in texts]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for j, t in enumerate(norm_texts):
        for gram in _shingles(t.split(), ngram):
            index[gram].append(j)
    hit = [False] * len(texts)
    for p in dict.fromkeys(normalize(x) for x in protected):
        if not p:
            continue
        if len(p) < min_chars:
            pad = f" {p} "
            grams = _shingles(p.split(), ngram)
            pool = set().union(*(index.get(g, ()) for g in grams)) if len(p.split()) >= ngram else range(len(texts))
            for j in pool:
                if not hit[j] and pad in f" {norm_texts[j]} ":
                    hit[j] = True
            continue
        pool = set().union(*(index.get(g, ()) for g in _shingles(p.split(), ngram)))
        # A window shorter than copy_chars is matched whole (ratio), not found inside longer texts.
        scorer = fuzz.partial_ratio if len(p) >= copy_chars else fuzz.ratio
        for j in pool:
            if not hit[j] and len(norm_texts[j]) >= min(len(p), copy_chars) and scorer(p, norm_texts[j], score_cutoff=threshold):
                hit[j] = True
    return hit
