"""The keep margin (docs/keep-margin.md): reply encoding, scoring, the rule, and PyTorch = onnxruntime."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from spantune.errors import SpantuneError
from spantune.export import ExportOptions, export_model
from spantune.infer.keep import KeepMargin, edit_preference, keeps_span, reply_logprob, scored_sequences
from spantune.prompt import render
from spantune.schema import write_jsonl
from support.export_fixture import e2e_examples, lively_tiny_model


def test_reply_logprob_hand_computed():
    # 4 positions, vocab 3; prompt = ids[:2], reply = ids[2:] = [2, 0], scored by logits rows 1 and 2
    logits = np.array([[9.0, 9.0, 9.0], [0.0, 0.0, math.log(2.0)], [math.log(3.0), 0.0, 0.0], [5.0, 5.0, 5.0]])
    ids = [1, 1, 2, 0]
    expected = math.log(2 / 4) + math.log(3 / 5)
    assert reply_logprob(logits, ids, 2) == pytest.approx(expected, abs=1e-12)


def test_preference_is_per_token_of_the_two_replies_mean_length():
    assert edit_preference(-1.0, -3.0, 3, 5) == 0.5           # 2 nats over replies of 3 and 5 tokens
    assert edit_preference(-2.0, -1.0, 2, 2) == -0.5          # greedy answer less likely than keeping


def test_rule_is_off_at_zero_and_never_keeps_an_unchanged_span():
    assert not keeps_span("the", "teh", 0.5, 0.0)             # margin 0: off
    assert keeps_span("the", "teh", 0.5, 0.6)                 # prefers the edit by 0.5 < 0.6 nats per token
    assert not keeps_span("the", "teh", 0.5, 0.5)             # by exactly the margin: edit stands
    assert keeps_span("the", "teh", -0.5, 0.01)               # greedy answer less likely than keeping
    assert not keeps_span("teh", "teh", -9.0, 5.0)            # nothing to keep


def test_bad_margin_is_one_clear_error():
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(SpantuneError, match="keep_margin"):
            KeepMargin(bad)


def test_keep_reply_is_the_training_reply(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ex = e2e_examples()[0]
    seqs = scored_sequences(tok, ex, [5, 6])
    assert seqs.prompt_ids == tok(render(tok, ex), add_special_tokens=False)["input_ids"]
    # ChatML: the reply is span_in then <|im_end|> (the template's trailing newline is not trained)
    assert seqs.keep_reply == tok(ex.span_in + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert seqs.answer_reply == [5, 6, tok.convert_tokens_to_ids("<|im_end|>")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("keep")
    model = lively_tiny_model(root / "model")
    write_jsonl(root / "examples.jsonl", e2e_examples())
    export_model(ExportOptions(model=str(model), out=root / "onnx", dtypes=("fp32",), verify_data=root / "examples.jsonl"))
    return model, root / "onnx"


def test_torch_and_onnxruntime_score_and_decide_alike(exported: tuple[Path, Path]):
    from spantune.infer.onnx_backend import OnnxCorrector
    from spantune.infer.torch_backend import TorchCorrector

    model_dir, onnx_dir = exported
    torch_c = TorchCorrector.load(str(model_dir), device="cpu", dtype="fp32", keep=KeepMargin(score=True))
    onnx_c = OnnxCorrector(onnx_dir, dtype="fp32", keep=KeepMargin(score=True))
    plain = OnnxCorrector(onnx_dir, dtype="fp32")
    examples = e2e_examples()
    t_preds, o_preds = [torch_c.correct(ex) for ex in examples], [onnx_c.correct(ex) for ex in examples]
    deltas = []
    for ex, t, o, p in zip(examples, t_preds, o_preds, (plain.correct(ex) for ex in examples)):
        assert (t.raw, t.result) == (o.raw, o.result) == (p.raw, p.result)  # score-only changes nothing
        assert (o.keep_logprob is None) == (o.text == ex.span_in)
        if o.keep_logprob is not None:
            assert o.kept is False
            assert t.keep_logprob == pytest.approx(o.keep_logprob, abs=1e-3)
            assert t.answer_logprob == pytest.approx(o.answer_logprob, abs=1e-3)
            assert t.edit_preference == pytest.approx(o.edit_preference, abs=1e-3)
            assert o.keep_logprob < 0 and o.answer_logprob < 0
            deltas.append(o.edit_preference)
    assert len(deltas) >= 4, "too few edited spans to compare decisions"
    # a margin between two preferences, far from both: some edits kept, others not, alike in both backends
    ordered = sorted(deltas)
    gap, i = max((b - a, i) for i, (a, b) in enumerate(zip(ordered, ordered[1:])))
    assert gap > 2e-3
    margin = ordered[i] + gap / 2
    assert margin > 0, f"no positive margin splits the deltas {ordered}"
    for corrector in (torch_c, onnx_c):
        corrector.keep = KeepMargin(margin)
    n_kept = 0
    for ex, o_scored in zip(examples, o_preds):
        t, o = torch_c.correct(ex), onnx_c.correct(ex)
        assert (t.text, t.kept) == (o.text, o.kept)
        if o.kept:
            n_kept += 1
            assert o.text == ex.span_in and o_scored.edit_preference < margin
        elif o_scored.keep_logprob is not None:
            assert o.text == o_scored.text != ex.span_in
    assert 0 < n_kept < len(deltas)


def test_huge_margin_keeps_every_span(exported: tuple[Path, Path]):
    from spantune.infer.onnx_backend import OnnxCorrector

    onnx_c = OnnxCorrector(exported[1], dtype="fp32", keep=KeepMargin(1e9))
    for ex in e2e_examples():
        pred = onnx_c.correct(ex)
        assert pred.text == ex.span_in
        assert pred.kept in (None, True)


def test_eval_records_scores_and_refuses_identity(exported: tuple[Path, Path], tmp_path: Path, capsys):
    from spantune.cli import main
    from spantune.evaluate.runner import read_predictions

    data = tmp_path / "spans.jsonl"
    write_jsonl(data, [dataclasses.replace(ex, id=f"e{i}") for i, ex in enumerate(e2e_examples())])
    out = tmp_path / "run"
    assert main(["eval", "--system", f"onnx:{exported[1]}", "--dtype", "fp32", "--data", str(data),
                 "--out", str(out), "--score-keep", "--bootstrap", "10"]) == 0
    rows = read_predictions(out / "predictions.jsonl")
    assert any(r.keep_logprob is not None for r in rows)
    assert all((r.keep_logprob is None) == (r.edit_preference is None) == (not r.changed) for r in rows)
    assert main(["eval", "--system", "identity", "--data", str(data), "--out", str(tmp_path / "id"),
                 "--keep-margin", "2"]) == 1
    assert "identity system has no log-probabilities" in capsys.readouterr().err


def test_fix_jsonl_with_huge_margin_keeps_and_records(exported: tuple[Path, Path], tmp_path: Path):
    import json

    from spantune.cli import main

    data, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    examples = e2e_examples()
    write_jsonl(data, examples)
    assert main(["fix", "--model", str(exported[0]), "--device", "cpu", "--jsonl", str(data), "--out", str(out),
                 "--keep-margin", "1e9"]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [d["prediction"] for d in lines] == [ex.span_in for ex in examples]
    scored = [d for d in lines if "kept" in d]
    assert scored and all(d["kept"] and d["answer_logprob"] < 0 and d["keep_logprob"] < 0 and "edit_preference" in d
                          for d in scored)


def test_fix_runs_an_export_like_the_model_it_came_from(exported: tuple[Path, Path], tmp_path: Path):
    """``spantune fix --model onnx:EXPORT`` (any ``eval --system``) answers and decides as the PyTorch model."""
    import json

    from spantune.cli import main

    data = tmp_path / "in.jsonl"
    write_jsonl(data, e2e_examples())
    outputs = []
    for args in (["--model", str(exported[0]), "--device", "cpu"], ["--model", f"onnx:{exported[1]}", "--dtype", "fp32"]):
        out = tmp_path / f"out{len(outputs)}.jsonl"
        assert main(["fix", *args, "--jsonl", str(data), "--out", str(out), "--keep-margin", "0.5"]) == 0
        outputs.append([json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()])
    decisions = [[(d["prediction"], d.get("kept")) for d in rows] for rows in outputs]
    assert decisions[0] == decisions[1]
    assert any(kept is not None for _, kept in decisions[1])  # the export scored its edits too


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_scores_on_the_decodes_cache_as_in_a_whole_pass(exported: tuple[Path, Path], backend: str):
    """Both backends score the keep margin's replies on the decode's own cache, cut back to the prompt (onnxruntime:
    after a decode from the prefix cache with copy drafts); the logits equal a whole pass."""
    from functools import partial

    from spantune.infer.decode import greedy, scored_after
    from spantune.infer.onnx_backend import OnnxCorrector
    from spantune.infer.torch_backend import TorchCorrector, TorchStepper, whole_pass
    from spantune.prompt import encode_prompt

    ex = e2e_examples()[0]
    if backend == "torch":
        corrector = TorchCorrector.load(str(exported[0]), device="cpu", dtype="fp32")
        prompt = encode_prompt(corrector.tokenizer, ex).prompt
        decode, pending, source = TorchStepper(corrector.model), list(prompt), []
        whole = partial(whole_pass, corrector.model)
    else:
        corrector = OnnxCorrector(exported[1], dtype="fp32")
        prompt = encode_prompt(corrector.tokenizer, ex).prompt
        decode, pending = corrector.decoder.start(prompt, corrector.prefix)
        source = encode_prompt(corrector.tokenizer, dataclasses.replace(ex, span_out=ex.span_in), with_answer=True).reply
        whole = corrector.whole_pass
    answer = greedy(decode, pending, 8, corrector.stop_ids, draft_source=source).tokens
    seqs = scored_sequences(corrector.tokenizer, ex, answer)
    assert seqs.prompt_ids == prompt
    start = len(prompt) - 1
    for reply in (seqs.keep_reply, seqs.answer_reply, seqs.keep_reply):  # each call cuts the cache back again
        ids = prompt + reply
        np.testing.assert_allclose(scored_after(decode, prompt, ids, start, whole), whole(ids, start), atol=1e-4)
        assert decode.cached() == len(ids)
    other = [prompt[0] + 1, *prompt[1:], *seqs.keep_reply]  # not the decode's prompt: a whole pass
    np.testing.assert_array_equal(scored_after(decode, prompt, other, start, whole), whole(other, start))


def test_batched_greedy_answers_like_one_span_at_a_time(exported: tuple[Path, Path]):
    """Training's checkpoint choice decodes in left-padded batches: on this fp32 model, the same answers."""
    from spantune.infer.torch_backend import TorchCorrector

    corrector = TorchCorrector.load(str(exported[0]), device="cpu", dtype="fp32")
    corrector.tokenizer.pad_token = "<|endoftext|>"
    examples = e2e_examples()
    assert len({len(corrector.tokenizer(ex.ctx_before)["input_ids"]) for ex in examples}) > 1  # padding happens
    one = [corrector.correct(ex) for ex in examples]
    for batch_size in (3, len(examples)):
        batched = corrector.correct_batch(examples, batch_size)
        assert [(p.raw, p.result, p.new_tokens) for p in batched] == [(p.raw, p.result, p.new_tokens) for p in one]
    with pytest.raises(SpantuneError, match="keep margin"):
        TorchCorrector(corrector.model, corrector.tokenizer, keep=KeepMargin(1.0)).correct_batch(examples, 2)
