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


def contaminated(texts: list[str], protected: list[str], threshold: float, ngram: int = 3,
                 copy_chars: int = 60) -> list[bool]:
    """Which ``texts`` (sentences or windows) hold a near copy of any ``protected`` window.

    A window of at least ``copy_chars`` characters matches a text of at least that length by rapidfuzz
    ``partial_ratio`` ≥ ``threshold`` (a window is a clipped piece of a paragraph). A shorter window only
    matches a text that is a near copy of it as a whole (``ratio``): short windows are formulaic ("Yours
    sincerely", "So", "I look forward to hearing from you", an exam prompt's given first sentence), and
    finding them inside other texts flags thousands of learner sentences that leak nothing. Candidates
    come from an inverted index of word ``ngram``s (exact normalized text for windows with fewer words):
    all-pairs fuzzy matching would take minutes.
    """
    norm_texts = [normalize(t) for t in texts]
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    by_text: dict[str, list[int]] = defaultdict(list)
    for j, t in enumerate(norm_texts):
        by_text[t].append(j)
        for gram in _shingles(t.split(), ngram):
            index[gram].append(j)
    hit = [False] * len(texts)
    for p in dict.fromkeys(normalize(x) for x in protected):
        words = p.split()
        if len(words) < ngram:
            for j in by_text.get(p, ()):
                hit[j] = True
            continue
        long = len(p) >= copy_chars
        scorer = fuzz.partial_ratio if long else fuzz.ratio
        for j in set().union(*(index.get(g, ()) for g in _shingles(words, ngram))):
            if not hit[j] and (not long or len(norm_texts[j]) >= copy_chars) and \
                    scorer(p, norm_texts[j], score_cutoff=threshold):
                hit[j] = True
    return hit
