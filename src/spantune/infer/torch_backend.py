"""Greedy span correction with a transformers model (CPU or CUDA), through :func:`spantune.infer.decode.greedy`."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from spantune.errors import SpantuneError
from spantune.infer.base import Prediction
from spantune.infer.decode import Greedy, greedy, scored_after, settled_by, stop_token_ids
from spantune.infer.keep import KeepMargin
from spantune.postprocess import postprocess
from spantune.prompt import encode_prompt
from spantune.schema import SpanExample


class TorchStepper:
    """A transformers model and one decode's KV cache (:class:`spantune.infer.decode.Stepper`). Each step is the
    forward call ``generate`` makes (``logits_to_keep`` rows, positions after the cache), without the logits
    processors a model's generation_config may ask for: greedy here is plain argmax, as in the ONNX export."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: Any = None  # the model creates its own cache type on the first step

    def cached(self) -> int:
        return 0 if self.cache is None else self.cache.get_seq_length()

    def crop(self, length: int) -> None:
        self.cache.crop(length)

    def step(self, ids: list[int], rows: int, drop: int) -> np.ndarray:
        import torch

        if drop:
            self.crop(self.cached() - drop)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.model.device), past_key_values=self.cache,
                             use_cache=True, logits_to_keep=rows)
        self.cache = out.past_key_values
        return out.logits[0].float().cpu().numpy()


def torch_greedy(model: Any, prompt_ids: list[int], max_new_tokens: int, stop_ids: list[int],
                 keep_logits: bool = False, until: Callable[[list[int]], bool] | None = None) -> Greedy:
    """:func:`~spantune.infer.decode.greedy` over ``model`` from an empty cache (corrector and parity reference)."""
    return greedy(TorchStepper(model), list(prompt_ids), max_new_tokens, stop_ids, keep_logits=keep_logits,
                  until=until)


class TorchCorrector:
    """Greedy decoding (no sampling), ``max_new_tokens`` cap, stop at end-of-turn/EOS or once the answer is
    settled; ``keep`` is the keep margin (off by default)."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int = 32, name: str = "torch",
                 keep: KeepMargin = KeepMargin()) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.name = name
        self.keep = keep
        self.stop_ids = stop_token_ids(tokenizer, model)
        self.settled = settled_by(tokenizer)

    @classmethod
    def load(cls, name_or_path: str, device: str = "auto", dtype: str = "auto", max_new_tokens: int = 32,
             keep: KeepMargin = KeepMargin()) -> "TorchCorrector":
        from spantune.models import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(name_or_path, device=device, dtype=dtype)
        return cls(model, tokenizer, max_new_tokens=max_new_tokens, name=name_or_path, keep=keep)

    def correct_batch(self, examples: Sequence[SpanExample], batch_size: int) -> list[Prediction]:
        """Predictions of many spans from :func:`batched_greedy` (no keep margin, latency 0): training's
        checkpoint choice. Reported evaluations decode one span at a time (:meth:`correct`)."""
        if self.keep.active:
            raise SpantuneError("correct_batch decodes without the keep margin; use correct()")
        prompts = [encode_prompt(self.tokenizer, ex).prompt for ex in examples]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        replies = batched_greedy(self.model, prompts, self.max_new_tokens, self.stop_ids, pad, batch_size,
                                 until=self.settled)
        return [self._prediction(ex, ids) for ex, ids in zip(examples, replies)]

    def _prediction(self, example: SpanExample, ids: list[int]) -> Prediction:
        """The post-processed answer of reply ids (latency filled in by the caller)."""
        raw = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Prediction(raw=raw, result=postprocess(raw, example.span_in), latency_s=0.0, new_tokens=len(ids))

    def correct(self, example: SpanExample) -> Prediction:
        t0 = time.perf_counter()
        prompt = encode_prompt(self.tokenizer, example).prompt
        decode = TorchStepper(self.model)
        ids = greedy(decode, list(prompt), self.max_new_tokens, self.stop_ids, until=self.settled).tokens
        pred = self.keep.apply(self._prediction(example, ids), example, ids, self.tokenizer,
                               partial(scored_after, decode, prompt, whole=partial(whole_pass, self.model)))
        return dataclasses.replace(pred, latency_s=time.perf_counter() - t0)


def batched_greedy(model: Any, prompts: Sequence[list[int]], max_new_tokens: int, stop_ids: list[int], pad_id: int,
                   batch_size: int, until: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """Greedy replies (stop token excluded) of many prompts, ``batch_size`` at a time, left-padded, through
    ``model.generate`` with plain argmax (no processors from the model's generation config), each cut where
    ``until`` first holds, as :func:`~spantune.infer.decode.greedy` stops there. Prompts are batched by length,
    so little is padded. The same tokens as :func:`torch_greedy` up to floating-point order (padding
    changes the matmul shapes, so a near-tie can flip): for checkpoint choice during training, where one pass
    per span would cost minutes per evaluation on a CPU (benchmarks/RESULTS.md), not for reported scores."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=list(stop_ids), pad_token_id=pad_id)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[list[int]] = [[] for _ in prompts]
    stops = set(stop_ids)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + list(prompts[i]) for i in rows],
                           device=model.device)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in rows],
                            device=model.device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        for i, row in zip(rows, out[:, width:].tolist()):
            reply = list(itertools.takewhile(lambda t: t not in stops, row))
            settled = (k for k in range(1, len(reply) + 1) if until is not None and until(reply[:k]))
            replies[i] = reply[:next(settled, len(reply))]
    return replies


def whole_pass(model: Any, ids: list[int], start: int) -> np.ndarray:
    """Logits of ``ids`` from position ``start``, from an empty cache (:func:`~spantune.infer.decode.scored_after`'s
    fallback)."""
    return TorchStepper(model).step(ids, len(ids), 0)[start:]
