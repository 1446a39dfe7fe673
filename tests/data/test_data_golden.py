"""The golden set (fixtures/span_eval.jsonl) and real-data processing of JFLEG (skipped when absent)."""

from __future__ import annotations

from collections import Counter

from spantune.data.build import cut, real_candidates
from spantune.data.config import DataConfig
from spantune.data.hygiene import contaminated, window
from spantune.data.sources import read_line_aligned
from spantune.data.split import primary_tag, span_words
from spantune.data.tags import ERROR_TAGS, TAGS, length_bucket
from spantune.schema import read_jsonl


def test_golden_set_is_balanced_and_well_formed(golden_path):
    examples = read_jsonl(golden_path)
    assert 180 <= len(examples) <= 220
    assert len({ex.id for ex in examples}) == len(examples)
    for ex in examples:
        assert len(ex.ctx_before) <= 60 and len(ex.ctx_after) <= 60, ex.id
        assert ex.ctx_before == "" or ex.ctx_before[-1].isspace(), ex.id  # spans are whole words
        assert ex.ctx_after == "" or ex.ctx_after[0].isspace(), ex.id
        assert ex.tags and all(t in TAGS for t in ex.tags) and ex.source == "golden", ex.id
        assert (ex.span_in == ex.span_out) == (ex.tags == ["noop"] or ex.tags == ["adversarial"]), ex.id
    tags = Counter(primary_tag(ex) for ex in examples)
    assert 0.10 <= tags["noop"] / len(examples) <= 0.20
    assert tags["adversarial"] >= 8
    assert sum(1 for t in ERROR_TAGS if tags[t] >= 4) >= 13
    buckets = Counter(length_bucket(span_words(ex)) for ex in examples)
    assert all(buckets[b] >= 25 for b in ("1", "2", "3-4", "5-6")), buckets
    pr = [ex for ex in examples if ex.extra.get("subset") == "pr"]
    assert len(pr) == 50 and len({primary_tag(ex) for ex in pr}) >= 14


def test_golden_set_is_not_taken_from_jfleg(golden_path, jfleg_dir):
    golden = read_jsonl(golden_path)
    pairs = read_line_aligned(jfleg_dir / "dev.src", [jfleg_dir / f"dev.ref{i}" for i in range(4)],
                              name="jfleg-dev", tokenized=True)
    texts = [s.text for p in pairs for s in (p.orig, *p.corrections)]
    assert not any(contaminated(texts, [window(ex) for ex in golden if len(window(ex)) >= 30], 85.0))


def test_jfleg_edits_become_natural_span_examples(jfleg_dir, errant_aligner):
    pairs = read_line_aligned(jfleg_dir / "dev.src", [jfleg_dir / f"dev.ref{i}" for i in range(4)],
                              name="jfleg-dev", tokenized=True)[:40]
    cfg = DataConfig()
    removed: Counter[str] = Counter()
    examples = [ex for c in real_candidates(pairs, errant_aligner, cfg, removed) if (ex := cut(c, cfg))]
    assert len(examples) > 200
    for ex in examples:
        text = ex.ctx_before + ex.span_in + ex.ctx_after
        assert " n't" not in text and " ," not in text and " ." not in text.rstrip(" ."), text
        assert len(ex.ctx_before) <= 60 and len(ex.ctx_after) <= 60
        assert 1 <= len(ex.span_in.split()) <= 6 and ex.span_in != ex.span_out
    assert len({primary_tag(ex) for ex in examples}) >= 8
