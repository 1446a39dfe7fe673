"""Stratified, group-aware train/eval split: by tag × span-length bucket × source, never splitting a sentence.

Examples cut from one sentence share a group (``extra["group"]``); putting the whole group on one
side keeps an eval sentence from leaking into training through its other edits.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from spantune.data.tags import length_bucket
from spantune.errors import SpantuneError
from spantune.schema import SpanExample


def primary_tag(ex: SpanExample) -> str:
    if ex.tags:
        return ex.tags[0]
    return "noop" if ex.is_noop else "untagged"


def span_words(ex: SpanExample) -> int:
    return len(ex.span_in.split())


def stratum(ex: SpanExample) -> tuple[str, str, str]:
    return primary_tag(ex), length_bucket(span_words(ex)), ex.source or ""


def group_of(ex: SpanExample) -> str:
    """The sentence an example came from; examples without one are their own group."""
    group = ex.extra.get("group")
    return group if isinstance(group, str) and group else f"window:{ex.ctx_before}{ex.span_in}{ex.ctx_after}"


def seeded_order(seed: int, *parts: object) -> str:
    """A seeded, input-order-free sort key: splits, caps and samples don't depend on file order."""
    return hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).hexdigest()


def stratified_split(examples: list[SpanExample], eval_fraction: float, seed: int) -> tuple[list[SpanExample], list[SpanExample]]:
    """Split into (train, eval) with about ``eval_fraction`` of every stratum in eval, whole groups at a time.

    Strata are filled smallest first so rare tag/length/source cells get their share, with rounding
    carried from one stratum to the next; within a stratum, groups are taken in a seed-determined
    order. Order of the input is preserved.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise SpantuneError(f"eval fraction must be in [0, 1), got {eval_fraction}")
    by_stratum: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_stratum[stratum(ex)].append(i)
        by_group[group_of(ex)].append(i)
    in_eval = [False] * len(examples)
    done: list[int] = []  # members of the strata already filled
    for key in sorted(by_stratum, key=lambda k: (len(by_stratum[k]), k)):
        members = by_stratum[key]
        have = sum(in_eval[i] for i in members)
        # Carry rounding over from the strata before, so many one-example strata still add up to the fraction.
        target = round(eval_fraction * (len(done) + len(members))) - sum(in_eval[i] for i in done)
        done += members
        for g in sorted({group_of(examples[i]) for i in members}, key=lambda g: seeded_order(seed, g)):
            if have >= target:
                break
            if in_eval[by_group[g][0]]:
                continue
            for i in by_group[g]:
                in_eval[i] = True
            have += sum(1 for i in by_group[g] if stratum(examples[i]) == key)
    train = [ex for ex, e in zip(examples, in_eval) if not e]
    held = [ex for ex, e in zip(examples, in_eval) if e]
    return train, held
