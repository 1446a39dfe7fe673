"""Training sequences: the chat-template prompt, then the reply and its end-of-turn token.

Why tokens are built here instead of letting TRL tokenize text: the prompt must be tokenized
exactly as every backend tokenizes it at inference (:func:`spantune.prompt.encode_prompt`: only the
template's markers are special tokens, user text never is), and the loss must cover only what the model
has to generate: the corrected span and the end-of-turn token that stops decoding. Everything before
(system prompt, user turn, ``<|im_start|>assistant\\n``) gets label -100, and whatever the template
puts after the end-of-turn token (ChatML's trailing newline) is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spantune.errors import InputError, SpantuneError
from spantune.infer.decode import encode_answer, stop_token_ids
from spantune.schema import SpanExample

IGNORE_INDEX = -100
#: Tried in order when the tokenizer has no pad token, or its pad token ends the turn.
PAD_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>", "<|pad|>", "<unk>")


@dataclass(frozen=True)
class Encoded:
    """One training sequence; ``prompt_len`` tokens are masked from the loss."""

    input_ids: list[int]
    labels: list[int]
    prompt_len: int


def choose_pad_token(tokenizer: Any, requested: str | None = None) -> str:
    """Set ``tokenizer.pad_token`` to a token that never ends a turn, and return it.

    Padding positions are excluded from attention and loss by length, but a pad id equal to the
    end-of-turn id would make a generation stop criterion or a downstream collator that masks pad
    ids also hide the token the model must learn to emit. So: the requested token, else the
    tokenizer's own pad token if it is not a stop token, else the first of :data:`PAD_CANDIDATES`
    in the vocabulary that is not a stop token.
    """
    vocab = tokenizer.get_vocab()
    stops = set(stop_token_ids(tokenizer))
    if requested is not None:
        if requested not in vocab:
            raise SpantuneError(f"config key model.pad_token: {requested!r} is not in the tokenizer's vocabulary")
        if vocab[requested] in stops:
            raise SpantuneError(f"config key model.pad_token: {requested!r} ends the turn; choose another token")
        tokenizer.pad_token = requested
        return requested
    candidates = [tokenizer.pad_token, *PAD_CANDIDATES]
    for tok in candidates:
        if tok is not None and tok in vocab and vocab[tok] not in stops:
            tokenizer.pad_token = tok
            return tok
    raise SpantuneError("the tokenizer has no pad token distinct from its end-of-turn/EOS tokens; "
                        "set model.pad_token to an unused token of its vocabulary")


def encode_example(tokenizer: Any, example: SpanExample, stop_ids: Sequence[int]) -> Encoded:
    """Prompt ids (masked) + reply ids up to and including the first stop token (trained): the reply as
    :func:`~spantune.infer.decode.encode_answer` defines it for decoding and the keep margin too."""
    ids = encode_answer(tokenizer, example, stop_ids)
    return Encoded(input_ids=ids.prompt + ids.reply, labels=[IGNORE_INDEX] * len(ids.prompt) + ids.reply,
                   prompt_len=len(ids.prompt))


def encode_all(tokenizer: Any, examples: Sequence[SpanExample], max_length: int, path: str,
               lines: Sequence[int]) -> list[Encoded]:
    """Encode every example; a sequence longer than ``max_length`` is a config error, not a silent cut.

    Truncating would cut the reply or its end-of-turn token, teaching the model never to stop.
    ``lines`` are the examples' line numbers in ``path``, for the error message.
    """
    stops = stop_token_ids(tokenizer)
    encoded = [encode_example(tokenizer, ex, stops) for ex in examples]
    longest = max(range(len(encoded)), key=lambda i: len(encoded[i].input_ids), default=None)
    if longest is not None and len(encoded[longest].input_ids) > max_length:
        enc = encoded[longest]
        raise InputError(path, lines[longest], "train.max_length",
                         f"{max_length} tokens is shorter than this example ({len(enc.input_ids)} tokens, "
                         f"prompt {enc.prompt_len}); raise train.max_length")
    return encoded


def to_dataset(encoded: Sequence[Encoded]) -> Any:
    """A ``datasets.Dataset`` with ``input_ids``/``labels`` (TRL uses given labels as they are)."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]})
