"""Greedy span correction with a transformers model (CPU or CUDA)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from spantune.infer.base import Prediction
from spantune.infer.keep import KeepMargin
from spantune.postprocess import postprocess, settled
from spantune.prompt import encode_prompt
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


def _settled_criterion(tokenizer: Any, prompt_len: int) -> Any:
    """A transformers stopping criterion: stop once the answer is settled (postprocess.settled)."""
    import torch
    from transformers import StoppingCriteria

    class Settled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = [settled(tokenizer.decode(row[prompt_len:].tolist(), skip_special_tokens=True)) for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return Settled()


class TorchCorrector:
    """Greedy decoding (no sampling), ``max_new_tokens`` cap, stop at end-of-turn/EOS; ``keep`` is the
    keep margin (off by default)."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int = 32, name: str = "torch",
                 keep: KeepMargin = KeepMargin()) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.name = name
        self.keep = keep
        self.stop_ids = stop_token_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]

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

    def generate_ids(self, prompt_ids: list[int]) -> list[int]:
        """Greedy new token ids after ``prompt_ids`` (stop token excluded)."""
        import torch

        from transformers import StoppingCriteriaList

        ids = torch.tensor([prompt_ids], device=self.model.device)
        prompt_len = len(prompt_ids)
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_new_tokens,
                                      stopping_criteria=StoppingCriteriaList([_settled_criterion(self.tokenizer, prompt_len)]),
                                      eos_token_id=self.stop_ids, pad_token_id=self.pad_id,
                                      temperature=None, top_p=None, top_k=None)
        new = out[0, prompt_len:].tolist()
        for i, tok in enumerate(new):
            if tok in self.stop_ids:
                return new[:i]
        return new

    def correct(self, example: SpanExample) -> Prediction:
        t0 = time.perf_counter()
        ids = self.generate_ids(encode_prompt(self.tokenizer, example).prompt)
        raw = self.tokenizer.decode(ids, skip_special_tokens=True)
        pred = Prediction(raw=raw, result=postprocess(raw, example.span_in), latency_s=0.0, new_tokens=len(ids))
        pred = self.keep.apply(pred, example, ids, self.tokenizer, self.logits)
        return dataclasses.replace(pred, latency_s=time.perf_counter() - t0)

    def correct_batch(self, examples: Iterable[SpanExample]) -> list[Prediction]:
        return [self.correct(ex) for ex in examples]
