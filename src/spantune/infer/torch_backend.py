"""Greedy span correction with a transformers model (CPU or CUDA), through :func:`spantune.infer.decode.greedy`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from spantune.infer.base import Prediction
from spantune.infer.decode import Greedy, greedy, settled_by, stop_token_ids
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

    def step(self, ids: list[int], rows: int, drop: int) -> np.ndarray:
        import torch

        if drop:
            self.cache.crop(self.cache.get_seq_length() - drop)
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

    def logits(self, ids: list[int]) -> np.ndarray:
        """float32 logits of one forward pass over ``ids`` (row i predicts token i + 1), for the keep margin."""
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.model.device))
        return out.logits[0].float().cpu().numpy()

    def correct(self, example: SpanExample) -> Prediction:
        t0 = time.perf_counter()
        ids = torch_greedy(self.model, encode_prompt(self.tokenizer, example).prompt, self.max_new_tokens,
                           self.stop_ids, until=self.settled).tokens
        raw = self.tokenizer.decode(ids, skip_special_tokens=True)
        pred = Prediction(raw=raw, result=postprocess(raw, example.span_in), latency_s=0.0, new_tokens=len(ids))
        pred = self.keep.apply(pred, example, ids, self.tokenizer, self.logits)
        return dataclasses.replace(pred, latency_s=time.perf_counter() - t0)
