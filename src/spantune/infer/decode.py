"""Greedy decoding, the one definition every Python path runs: where a reply ends, and the loop that finds it.

PyTorch (:class:`~spantune.infer.torch_backend.TorchCorrector`), onnxruntime
(:class:`~spantune.infer.onnx_backend.OnnxCorrector`) and the export's parity check all call :func:`greedy`
over a :class:`Stepper` (a model with one decode's KV cache), so "same tokens" between them is a statement about the
models, never about two loops. The reply ends at the first of :func:`stop_token_ids`, at ``max_new_tokens``, or
(when asked) once :func:`~spantune.postprocess.settled` says more output cannot change the inserted text.
``js/src/corrector.js`` implements the same loop for Transformers.js.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from spantune.postprocess import settled
from spantune.prompt import PromptIds, encode_prompt
from spantune.schema import SpanExample

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Every id that ends the reply: EOS, the chat template's end-of-turn, generation_config's."""
    ids: list[int] = []
    candidates: list[Any] = [tokenizer.eos_token_id]
    if model is not None and getattr(model, "generation_config", None) is not None:
        candidates.append(model.generation_config.eos_token_id)
    vocab = tokenizer.get_vocab()
    candidates += [vocab.get(tok) for tok in END_OF_TURN_TOKENS]
    for cand in candidates:
        for i in cand if isinstance(cand, (list, tuple)) else [cand]:
            if i is not None and i not in ids:
                ids.append(int(i))
    return ids


def encode_answer(tokenizer: Any, example: SpanExample, stop_ids: Sequence[int]) -> PromptIds:
    """The prompt, and ``span_out`` as the reply greedy decoding would emit: its tokens up to and including the
    first stop id (the first of ``stop_ids`` appended when the template writes none). Training teaches exactly
    this reply, and the keep margin scores it."""
    ids = encode_prompt(tokenizer, example, with_answer=True)
    end = next((i for i, tok in enumerate(ids.reply) if tok in stop_ids), None)
    reply = [*ids.reply, stop_ids[0]] if end is None else ids.reply[: end + 1]
    return PromptIds(prompt=ids.prompt, reply=reply)


def settled_by(tokenizer: Any) -> Callable[[list[int]], bool]:
    """The early stop for :func:`greedy`'s ``until``: the decoded answer is settled (nothing later can change
    the post-processed text, so decoding further only costs time)."""
    return lambda tokens: settled(tokenizer.decode(tokens, skip_special_tokens=True))


@dataclass
class Greedy:
    """Result of one greedy decode: new token ids (stop token excluded), if asked each step's logits, the
    forward passes it took (a prefix cache's one-off pass not counted), the smallest :func:`lead` of a token taken
    from a row computed after a draft, whether a near-tie had it redone one token a pass (:func:`greedy`), and
    the logits row after the prompt."""

    tokens: list[int]
    logits: list[np.ndarray] = field(default_factory=list)
    stopped: bool = False
    passes: int = 0
    closest: float = math.inf
    replayed: bool = False
    first_row: np.ndarray | None = field(default=None, repr=False)


def lead(row: np.ndarray) -> float:
    """How far greedy's choice in a logits row leads the runner-up: below the gap between two ways of computing
    the same logits, the two may choose differently."""
    runner_up, best = np.partition(row, -2)[-2:]
    return float(best - runner_up)


class Stepper(Protocol):
    """A causal LM and one decode's KV cache, as :func:`greedy` drives it."""

    def step(self, ids: list[int], rows: int, drop: int) -> np.ndarray:
        """Forget the last ``drop`` cached inputs (draft guesses greedy did not take), run ``ids`` after the rest
        and cache them; return float32 logits of the last ``rows`` inputs (row i predicts the token after it)."""
        ...

    def cached(self) -> int:
        """How many inputs the cache holds."""
        ...

    def crop(self, length: int) -> None:
        """Keep the first ``length`` cached inputs only."""
        ...


def scored_after(stepper: Stepper, prompt: Sequence[int], ids: list[int], start: int,
                 whole: Callable[[list[int], int], np.ndarray]) -> np.ndarray:
    """The keep margin's forward pass (:data:`spantune.infer.keep.Forward`: logits of ``ids`` from position
    ``start``) on the decode's own cache cut back to ``start`` tokens of its prompt, so each scored reply costs its
    few tokens instead of a whole prompt; ``whole(ids, start)`` (a pass from an empty or prefix cache) when ``ids``
    does not start with that prompt or the cache does not hold it."""
    if start > min(len(prompt), stepper.cached()) or list(ids[:start]) != list(prompt[:start]):
        return whole(ids, start)
    stepper.crop(start)
    return stepper.step(ids[start:], len(ids) - start, 0)


def copy_draft(source: Sequence[int], generated: Sequence[int], limit: int, max_ngram: int = 3) -> list[int]:
    """Up to ``limit`` guessed next tokens, copied from ``source`` (``span_in`` as the reply): its start while
    nothing is generated, else what follows the first place where the last n generated tokens occur in it
    (longest n first); nothing when they occur nowhere. Guesses only save passes, never change tokens."""
    if limit <= 0:
        return []
    if not generated:
        return list(source[:limit])
    for n in range(min(max_ngram, len(generated)), 0, -1):
        tail = list(generated[-n:])
        for start in range(len(source) - n + 1):
            if list(source[start:start + n]) == tail:
                return list(source[start + n:start + n + limit])
    return []


def greedy(stepper: Stepper, pending: list[int], max_new_tokens: int, stop_ids: Iterable[int], *,
           keep_logits: bool = False, until: Callable[[list[int]], bool] | None = None,
           draft_source: Sequence[int] = (), draft_len: int = 8, tie_guard: float = 0.0) -> Greedy:
    """Greedy decoding from ``stepper``'s cache plus ``pending`` (the prompt ids not cached yet): argmax, stop at
    any of ``stop_ids`` (not kept), at ``max_new_tokens``, or once ``until(tokens)`` is True (checked after each
    new token, e.g. :func:`settled_by`); ``keep_logits`` keeps each step's float32 logits.

    A ``draft_source`` (the reply ids of ``span_in``) feeds up to ``draft_len`` guessed tokens (:func:`copy_draft`)
    after the pending one in each pass; the logits row after each input token is greedy's step there, so tokens
    are taken in order until a guess differs from greedy's token, which is taken too: plain greedy's tokens,
    stop and ``until`` checks, in fewer passes. The cache is cut back to the inputs that were taken.

    The rows of a pass over several tokens round differently from one-token passes. So when a token taken after
    a draft led the runner-up by less than ``tie_guard`` nats, the reply is decoded again one token a pass from
    the prompt's cache and logits row (which drafts after the prompt leave unchanged): plain greedy's steps, at the
    cost of the reply's passes (``replayed``; both decodes' passes counted)."""
    prompt_end = stepper.cached() + len(pending)
    fast = _decode(stepper, pending, max_new_tokens, stop_ids, keep_logits, until, draft_source, draft_len)
    if fast.closest >= tie_guard or fast.first_row is None:
        return fast
    stepper.crop(prompt_end)
    again = _decode(stepper, [], max_new_tokens, stop_ids, keep_logits, until, (), draft_len, first=fast.first_row)
    return dataclasses.replace(again, passes=fast.passes + again.passes, replayed=True)


def _decode(stepper: Stepper, pending: list[int], max_new_tokens: int, stop_ids: Iterable[int], keep_logits: bool,
            until: Callable[[list[int]], bool] | None, draft_source: Sequence[int], draft_len: int,
            first: np.ndarray | None = None) -> Greedy:
    """:func:`greedy`'s loop, without the tie guard; ``first`` (the logits row after the cached prompt, from an
    earlier pass) stands in for the first pass."""
    stop = set(stop_ids)
    result = Greedy(tokens=[])
    drop = 0
    drafted = False  # once a draft is fed, reply rows are no longer those of one-token passes
    while len(result.tokens) < max_new_tokens:
        room = max_new_tokens - len(result.tokens) - 1
        draft = copy_draft(draft_source, result.tokens, min(draft_len, room)) if draft_source else []
        if first is not None:
            rows, first, draft = first[None], None, []
        else:
            rows = stepper.step(pending + draft, len(draft) + 1, drop)
            result.passes += 1
        prompt_rows = 1 if result.first_row is None else 0  # the prompt's last row: as in the plain prompt pass
        result.first_row = rows[0] if prompt_rows else result.first_row
        drafted = drafted or bool(draft)
        drop = len(draft)  # guesses not confirmed below: cut from the cache by the next step
        for i, (row, guess) in enumerate(zip(rows, [*draft, None])):
            if keep_logits:
                result.logits.append(row)
            if drafted and i >= prompt_rows:
                result.closest = min(result.closest, lead(row))
            token = int(row.argmax())
            if token in stop:
                result.stopped = True
                return result
            result.tokens.append(token)
            if (until is not None and until(result.tokens)) or len(result.tokens) == max_new_tokens:
                return result
            if token != guess:
                break
            drop -= 1
        pending = [result.tokens[-1]]
    return result
