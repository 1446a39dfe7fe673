"""Turn one (text with a single error, corrected text) pair into a span example, as the editor would.

Real and synthetic examples both come through :func:`make_example`, so they share the span policy:
the span is the edit widened to whole words, then to a sampled length of 1–6 words, and the
contexts are cut by :func:`spantune.prompt.select_span`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from spantune.prompt import select_span
from spantune.data.text import word_bounds


@dataclass(frozen=True)
class Cut:
    """The four prompt fields of one example (before tags and ids are attached)."""

    ctx_before: str
    span_in: str
    ctx_after: str
    span_out: str


def edit_region(a: str, b: str) -> tuple[int, int, int]:
    """``(p, end_a, end_b)``: ``a[p:end_a]`` became ``b[p:end_b]``; the rest of both strings is equal."""
    n = min(len(a), len(b))
    p = 0
    while p < n and a[p] == b[p]:
        p += 1
    q = 0
    while q < n - p and a[-1 - q] == b[-1 - q]:
        q += 1
    return p, len(a) - q, len(b) - q


def sample_length(rng: random.Random, weights: Mapping[int, float]) -> int:
    """Draw a span length in words from the configured distribution."""
    lengths = sorted(weights)
    return rng.choices(lengths, weights=[weights[k] for k in lengths])[0]


def make_example(text_in: str, text_out: str, n_words: int, rng: random.Random, *,
                 max_span_words: int = 6, max_context: int = 60, anchor: int | None = None) -> Cut | None:
    """Cut a span of about ``n_words`` words around the only difference between the two texts.

    ``text_in == text_out`` gives a no-op example around character ``anchor`` (random if None).
    Returns None when the edit cannot fit in ``max_span_words`` words on either side.
    """
    words = word_bounds(text_in)
    if not words:
        return None
    delta = len(text_out) - len(text_in)
    if text_in == text_out:
        if anchor is None:
            i0 = rng.randrange(len(words))
        else:
            i0 = next((i for i, (s, e) in enumerate(words) if e > anchor), len(words) - 1)
        i1 = i0
    else:
        p, end_in, _ = edit_region(text_in, text_out)
        touching = [i for i, (s, e) in enumerate(words) if s <= end_in and e >= p]
        if not touching:
            return None
        i0, i1 = touching[0], touching[-1]

    def out_span(a: int, b: int) -> str:
        return text_out[words[a][0]:words[b][1] + delta]

    # Grow until the corrected span is whole words too (e.g. a deleted word leaves a space at an edge).
    while True:
        out = out_span(i0, i1)
        if out and not out[0].isspace() and not out[-1].isspace():
            break
        if out[:1].isspace() or not out:
            if i0 == 0:
                if i1 == len(words) - 1:
                    return None
                i1 += 1
            else:
                i0 -= 1
        else:
            if i1 == len(words) - 1:
                return None
            i1 += 1

    def size(a: int, b: int) -> int:
        return max(b - a + 1, len(out_span(a, b).split()))

    target = min(max(n_words, 1), max_span_words)
    while size(i0, i1) < target:
        sides = [side for side, ok in (("left", i0 > 0), ("right", i1 < len(words) - 1)) if ok]
        if not sides:
            break
        if rng.choice(sides) == "left":
            i0 -= 1
        else:
            i1 += 1
    if size(i0, i1) > max_span_words:
        return None
    start, end = words[i0][0], words[i1][1]
    before, span_in, after = select_span(text_in, start, end, max_context)
    return Cut(before, span_in, after, text_out[start:end + delta])
