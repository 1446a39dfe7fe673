"""Prefix cache and copy-draft decoding in the onnxruntime backend: the same tokens as plain greedy decoding.

A tiny random model (exported at test time) on fixtures/prompt_cases.jsonl's prompts and the golden set; its
answers never copy ``span_in``, so the draft check also runs with drafts that are right (greedy's own tokens)
and wrong in the middle, which exercises taking guesses and cutting the cache back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spantune.schema import SpanExample, read_jsonl
from support.export_fixture import e2e_examples


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spantune.export import ExportOptions, export_model
    from support.export_fixture import lively_tiny_model

    work = tmp_path_factory.mktemp("fast")
    out = work / "export"
    export_model(ExportOptions(model=str(lively_tiny_model(work / "tiny")), out=out, dtypes=("fp32", "q4", "int8"),
                               verify=False))
    return out


@pytest.fixture(scope="module")
def examples(golden_path: Path) -> list[SpanExample]:
    return e2e_examples() + read_jsonl(golden_path, clip=True)


def test_prompt_head_is_a_token_prefix_of_every_prompt(export_dir: Path, examples: list[SpanExample]) -> None:
    from spantune.infer.onnx_backend import OnnxCorrector, prompt_head_ids

    corrector = OnnxCorrector(export_dir, dtype="fp32")
    head = prompt_head_ids(corrector.tokenizer)
    text = corrector.tokenizer.decode(head)
    assert text.endswith("<|im_start|>user\nContext before:") and "Correct ONLY the Span." in text
    assert all(corrector.prefix.covers(corrector.prompt_ids(ex)) for ex in examples)


def test_a_prompt_the_head_does_not_cover_decodes_from_an_empty_cache(export_dir: Path) -> None:
    """BPE can merge user text into the head's last token; such a prompt must not start from the cache."""
    from spantune.infer.onnx_backend import OnnxCorrector, PrefixCache

    corrector = OnnxCorrector(export_dir, dtype="fp32", copy_draft=False)
    ex = e2e_examples()[0]
    ids = corrector.prompt_ids(ex)
    wrong = PrefixCache(ids=[*corrector.prefix.ids[:-1], ids[0]], past=corrector.prefix.past,
                        logits=corrector.prefix.logits)
    assert not wrong.covers(ids) and not corrector.prefix.covers(corrector.prefix.ids)
    plain = corrector.decoder.greedy(ids, 32, corrector.stop_ids)
    assert corrector.decoder.greedy(ids, 32, corrector.stop_ids, prefix=wrong).tokens == plain.tokens


@pytest.mark.parametrize("dtype", ["fp32", "q4", "int8"])
def test_cached_and_drafted_answers_equal_plain_greedy(export_dir: Path, examples: list[SpanExample],
                                                       dtype: str) -> None:
    from spantune.infer.onnx_backend import OnnxCorrector

    plain = OnnxCorrector(export_dir, dtype=dtype, prefix_cache=False, copy_draft=False)
    fast = OnnxCorrector(export_dir, dtype=dtype, tie_guard=0.0)  # the fast decode itself, never redone plain
    raws = set()
    for ex in examples:
        (want, want_run), (got, got_run) = plain.correct_greedy(ex), fast.correct_greedy(ex)
        assert (got.raw, got.result, got_run.tokens, got_run.stopped) == \
            (want.raw, want.result, want_run.tokens, want_run.stopped), ex
        assert got_run.passes <= want_run.passes and not got_run.replayed
        raws.add(want.raw)
    assert len(raws) > len(examples) // 2, "degenerate model: answers alike"


def test_right_and_wrong_drafts_give_greedy_tokens_and_logits_in_fewer_passes(export_dir: Path) -> None:
    from spantune.infer.onnx_backend import OnnxCorrector

    corrector = OnnxCorrector(export_dir, dtype="fp32")
    decoder, stop = corrector.decoder, corrector.stop_ids
    fewer = 0
    for ex in e2e_examples():
        ids = corrector.prompt_ids(ex)
        plain = decoder.greedy(ids, 32, stop, keep_logits=True)
        assert plain.passes == len(plain.logits)
        mid = len(plain.tokens) // 2
        wrong_middle = [*plain.tokens[:mid], (plain.tokens[mid] + 1) % 50, *plain.tokens[mid + 1:]] \
            if plain.tokens else []
        for source in (plain.tokens + stop[:1], wrong_middle):
            got = decoder.greedy(ids, 32, stop, keep_logits=True, prefix=corrector.prefix, draft_source=source)
            assert (got.tokens, got.stopped) == (plain.tokens, plain.stopped)
            assert len(got.logits) == len(plain.logits)
            assert max(float(np.abs(a - b).max()) for a, b in zip(got.logits, plain.logits)) < 1e-3
            fewer += got.passes < plain.passes
        # the settled early stop and the token limit end a drafted decode where they end a plain one
        short = decoder.greedy(ids, 5, stop, draft_source=plain.tokens, until=lambda t: len(t) >= 3)
        assert short.tokens == plain.tokens[:3]
    assert fewer >= len(e2e_examples())


def test_copy_draft_guesses() -> None:
    from spantune.infer.decode import copy_draft

    source = [10, 11, 12, 13, 11, 14, 2]
    assert copy_draft(source, [], 3) == [10, 11, 12]
    assert copy_draft(source, [10, 11], 2) == [12, 13]
    assert copy_draft(source, [99, 13, 11], 8) == [14, 2]  # "13 11" beats the first "11"
    assert copy_draft(source, [99, 11], 2) == [12, 13]  # after a divergence: the continuation of the match
    assert copy_draft(source, [99], 4) == []
    assert copy_draft(source, [10], 0) == []


def test_keep_margin_scores_from_the_prefix_cache_as_from_an_empty_one(export_dir: Path) -> None:
    from spantune.infer.keep import KeepMargin
    from spantune.infer.onnx_backend import OnnxCorrector

    plain = OnnxCorrector(export_dir, dtype="fp32", keep=KeepMargin(score=True), prefix_cache=False, copy_draft=False)
    fast = OnnxCorrector(export_dir, dtype="fp32", keep=KeepMargin(score=True))
    huge = OnnxCorrector(export_dir, dtype="fp32", keep=KeepMargin(1e9))
    scored = 0
    for ex in e2e_examples():
        want, got = plain.correct(ex), fast.correct(ex)
        assert huge.correct(ex).text == ex.span_in
        assert (got.text, got.kept) == (want.text, want.kept)
        if want.keep_logprob is not None:
            assert got.keep_logprob == pytest.approx(want.keep_logprob, abs=1e-4)
            assert got.answer_logprob == pytest.approx(want.answer_logprob, abs=1e-4)
            assert got.edit_preference == pytest.approx(want.edit_preference, abs=1e-4)
            scored += 1
    assert scored >= 4


def test_a_drafted_reply_with_a_near_tie_is_redone_one_token_a_pass(export_dir: Path) -> None:
    from spantune.infer.onnx_backend import TIE_GUARD, OnnxCorrector, dtype_tie_guard

    assert [OnnxCorrector(export_dir, dtype=d).tie_guard for d in ("int8", "q4")] == \
        [TIE_GUARD["int8"], TIE_GUARD["float"]]
    assert dtype_tie_guard("q4", accuracy_level=4) == TIE_GUARD["int8"]  # MatMulNBits with int8 activations
    plain = OnnxCorrector(export_dir, dtype="int8", prefix_cache=False, copy_draft=False)
    always = OnnxCorrector(export_dir, dtype="int8", tie_guard=np.inf)
    replayed = 0
    for ex in e2e_examples():
        (want, want_run), (got, got_run) = plain.correct_greedy(ex), always.correct_greedy(ex)
        assert (got.raw, got_run.tokens) == (want.raw, want_run.tokens)
        if got_run.replayed:  # at least one drafted pass, then one pass a token after the first (the prompt's row)
            assert got_run.passes >= len(want_run.tokens) + want_run.stopped
        replayed += got_run.replayed
        assert not want_run.replayed and want_run.closest == np.inf  # no draft, nothing to guard
    assert replayed >= len(e2e_examples()) // 2


class NoisyModel:
    """A Stepper over a made-up language model whose logits depend on the context and, by up to ``noise``, on
    whether the pass holds one input or several (as onnxruntime's one-row and many-row kernels round differently),
    with planted near-ties."""

    VOCAB = 12

    def __init__(self, noise: float, cached: list[int] | None = None) -> None:
        self.noise = noise
        self.ids = list(cached or [])

    @staticmethod
    def exact(context: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(context)) % 2**32)
        logits = rng.normal(size=NoisyModel.VOCAB) * 3
        if rng.random() < 0.5:  # a near-tie: the runner-up within a few noise widths of the best
            order = np.argsort(logits)
            logits[order[-2]] = logits[order[-1]] - rng.uniform(0, 0.05)
        return logits

    def step(self, ids: list[int], rows: int, drop: int) -> np.ndarray:
        self.ids = self.ids[: len(self.ids) - drop] + list(ids)
        out = []
        for end in range(len(self.ids) - rows + 1, len(self.ids) + 1):
            context = tuple(self.ids[:end])
            wobble = np.random.default_rng(abs(hash((context, len(ids) > 1))) % 2**32).uniform(-1, 1, self.VOCAB)
            out.append(self.exact(context) + self.noise * wobble)
        return np.stack(out)

    def cached(self) -> int:
        return len(self.ids)

    def crop(self, length: int) -> None:
        self.ids = self.ids[:length]


def test_the_tie_guard_makes_drafted_decodes_answer_as_plain_ones() -> None:
    """Rows of a pass over several tokens and of a one-token pass differ by up to 2 x ``noise`` a logit, so a
    drafted decode alone sometimes takes another token at a near-tie; with ``tie_guard`` above twice that gap it
    answers as plain greedy every time, from the prefix cache and with drafts."""
    from spantune.infer.decode import greedy

    noise, stop, head = 0.01, [0], [1, 2, 3]
    rng = np.random.default_rng(0)
    differs = replayed = 0
    for _ in range(300):
        prompt = [*head, *rng.integers(1, NoisyModel.VOCAB, 5).tolist()]
        source = rng.integers(1, NoisyModel.VOCAB, 6).tolist()
        want = greedy(NoisyModel(noise), list(prompt), 12, stop)

        def fast(guard: float) -> object:
            return greedy(NoisyModel(noise, head), prompt[len(head):], 12, stop, draft_source=source, tie_guard=guard)

        unguarded, got = fast(0.0), fast(4 * noise + 1e-6)
        differs += unguarded.tokens != want.tokens
        assert (got.tokens, got.stopped) == (want.tokens, want.stopped)
        replayed += got.replayed
        assert not unguarded.replayed
    assert differs > 0 and replayed > differs  # the guard was needed, and it redid more than it had to
