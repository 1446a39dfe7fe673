"""Greedy span correction with an exported ONNX folder, run by onnxruntime directly.

The folder is what ``spantune export`` writes (the layout Transformers.js loads): one merged
decoder per dtype under ``onnx/`` with inputs ``input_ids``, ``attention_mask``, ``position_ids``
and ``past_key_values.N.key/value``. Decoding here mirrors Transformers.js: the whole prompt in
one step, then one token per step with the KV cache, argmax, stop at any end id or once the
post-processed answer is settled (as :class:`~spantune.infer.torch_backend.TorchCorrector` does).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spantune.errors import SpantuneError
from spantune.infer.base import Prediction
from spantune.infer.keep import KeepMargin
from spantune.postprocess import postprocess, settled
from spantune.prompt import encode_prompt
from spantune.schema import SpanExample

#: Transformers.js file suffix of each dtype (``onnx/model{suffix}.onnx``).
DTYPE_SUFFIX = {"fp32": "", "fp16": "_fp16", "q4": "_q4", "q4f16": "_q4f16", "q8": "_quantized", "int8": "_int8"}
_NUMPY_TYPE = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def onnx_file(model_dir: str | Path, dtype: str) -> Path:
    """Path of the ONNX decoder for ``dtype`` inside an export folder."""
    if dtype not in DTYPE_SUFFIX:
        raise SpantuneError(f"unknown ONNX dtype {dtype!r} (choose {', '.join(DTYPE_SUFFIX)})")
    return Path(model_dir) / "onnx" / f"model{DTYPE_SUFFIX[dtype]}.onnx"


@dataclass
class Greedy:
    """Result of one greedy decode: new token ids (stop token excluded) and, if asked, each step's logits."""

    tokens: list[int]
    logits: list[np.ndarray] = field(default_factory=list)
    stopped: bool = False


class OnnxDecoder:
    """One onnxruntime session over a merged decoder with past key values."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise SpantuneError(f"{path} not found: export the model with `spantune export` (and this dtype)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        missing = {"input_ids", "attention_mask", "position_ids"} - set(inputs)
        if missing or not self.past_names:
            raise SpantuneError(f"{path} is not a decoder with past key values (missing {sorted(missing) or 'past'})")
        self.past_shapes = {n: inputs[n].shape for n in self.past_names}
        self.past_dtype = _NUMPY_TYPE[inputs[self.past_names[0]].type]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def empty_past(self) -> dict[str, np.ndarray]:
        """A KV cache holding nothing yet, for the first (prefill) step."""
        # shapes are [batch, kv_heads, past_len, head_dim] with the symbolic dims as strings
        return {n: np.zeros((1, shape[1], 0, shape[3]), dtype=self.past_dtype) for n, shape in self.past_shapes.items()}

    @staticmethod
    def step_feeds(ids: np.ndarray, past_len: int, past: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The decoder's inputs for ``ids`` (batch 1) following ``past_len`` cached tokens."""
        step = ids.shape[1]
        return {"input_ids": ids,
                "attention_mask": np.ones((1, past_len + step), dtype=np.int64),
                "position_ids": np.arange(past_len, past_len + step, dtype=np.int64)[None, :],
                **past}

    def logits(self, ids: list[int]) -> np.ndarray:
        """float32 logits of one forward pass over ``ids`` from an empty cache (row i predicts token i + 1)."""
        feeds = self.step_feeds(np.asarray([ids], dtype=np.int64), 0, self.empty_past())
        logits = self.session.run(["logits"], feeds)[0]
        return logits[0].astype(np.float32)

    def greedy(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: Iterable[int],
               keep_logits: bool = False, until: Callable[[list[int]], bool] | None = None) -> Greedy:
        """Greedy decoding with the KV cache; ``keep_logits`` returns each step's float32 logits;
        ``until(tokens)`` ends decoding early once it returns True (checked after each new token)."""
        stop = set(stop_ids)
        ids = np.asarray([prompt_ids], dtype=np.int64)
        past = self.empty_past()
        length = 0
        result = Greedy(tokens=[])
        for _ in range(max_new_tokens):
            outputs = dict(zip(self.output_names, self.session.run(None, self.step_feeds(ids, length, past))))
            logits = outputs["logits"][0, -1].astype(np.float32)
            if keep_logits:
                result.logits.append(logits)
            token = int(logits.argmax())
            if token in stop:
                result.stopped = True
                break
            result.tokens.append(token)
            if until is not None and until(result.tokens):
                break
            length += ids.shape[1]
            ids = np.asarray([[token]], dtype=np.int64)
            past = {name: outputs[name.replace("past_key_values.", "present.")] for name in self.past_names}
        return result


def stop_ids_from_folder(model_dir: Path, tokenizer: Any) -> list[int]:
    """End ids written by the export (generation_config.json), else the tokenizer's."""
    from spantune.infer.torch_backend import stop_token_ids

    gen = model_dir / "generation_config.json"
    ids = json.loads(gen.read_text()).get("eos_token_id") if gen.is_file() else None
    if ids is None:
        return stop_token_ids(tokenizer)
    return [int(i) for i in (ids if isinstance(ids, list) else [ids])]


class OnnxCorrector:
    """The :class:`~spantune.infer.base.Corrector` for an exported folder (``--system onnx:DIR``); ``keep``
    is the keep margin (off by default), scored with one forward pass per reply from an empty cache."""

    def __init__(self, model_dir: str | Path, dtype: str = "q4", max_new_tokens: int = 32,
                 threads: int | None = None, name: str | None = None, keep: KeepMargin = KeepMargin()) -> None:
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "tokenizer.json").is_file():
            raise SpantuneError(f"{self.model_dir} is not an exported model folder (no tokenizer.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.decoder = OnnxDecoder(onnx_file(self.model_dir, dtype), threads=threads)
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.stop_ids = stop_ids_from_folder(self.model_dir, self.tokenizer)
        self.name = name or f"onnx:{self.model_dir}:{dtype}"
        self.keep = keep

    def prompt_ids(self, example: SpanExample) -> list[int]:
        """Token ids of the prompt (:func:`~spantune.prompt.encode_prompt`: user text never becomes a special token)."""
        return encode_prompt(self.tokenizer, example).prompt

    def _settled(self, tokens: list[int]) -> bool:
        # the same early stop as TorchCorrector: nothing later can change the post-processed answer
        return settled(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def correct_greedy(self, example: SpanExample, keep_logits: bool = False) -> tuple[Prediction, Greedy]:
        """The prediction and the decode behind it (token ids, and each step's logits if asked)."""
        t0 = time.perf_counter()
        out = self.decoder.greedy(self.prompt_ids(example), self.max_new_tokens, self.stop_ids, keep_logits,
                                  until=self._settled)
        raw = self.tokenizer.decode(out.tokens, skip_special_tokens=True)
        pred = Prediction(raw=raw, result=postprocess(raw, example.span_in), latency_s=0.0,
                          new_tokens=len(out.tokens))
        pred = self.keep.apply(pred, example, out.tokens, self.tokenizer, self.decoder.logits)
        return dataclasses.replace(pred, latency_s=time.perf_counter() - t0), out

    def correct(self, example: SpanExample) -> Prediction:
        return self.correct_greedy(example)[0]

    def correct_batch(self, examples: Iterable[SpanExample]) -> list[Prediction]:
        return [self.correct(ex) for ex in examples]
