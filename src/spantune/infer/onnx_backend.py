"""Greedy span correction with an exported ONNX folder, run by onnxruntime directly.

The folder is what ``spantune export`` writes (the layout Transformers.js loads): one merged
decoder per dtype under ``onnx/`` with inputs ``input_ids``, ``attention_mask``, ``position_ids``
and ``past_key_values.N.key/value``. Decoding is :func:`spantune.infer.decode.greedy` (the loop
:class:`~spantune.infer.torch_backend.TorchCorrector` and the export's parity check run too) over the session's KV
cache; plain decoding (no prefix, no draft source) is the whole prompt in one step, then one token per step.

:class:`OnnxCorrector` adds two speed-ups that give the same tokens as plain decoding (docs/fast-decoding.md;
``js/src/corrector.js`` does the same):

* **prefix cache**: the KV cache of the prompt head every span shares (chat template head, system prompt,
  the user turn's fixed opening) is computed once per loaded model; a prompt whose ids start with the head's
  ids starts from it, any other prompt decodes from an empty cache;
* **copy draft**: the answer is usually ``span_in`` or close to it, so the next tokens are guessed from
  ``span_in``'s reply tokens (prompt-lookup decoding) and checked in one forward pass; greedy's own tokens are
  kept up to the first wrong guess, plus greedy's token there;
* **tie guard**: a pass over several tokens rounds differently from one-token passes, so where a token taken after
  a draft led the runner-up by less than the dtype's :data:`TIE_GUARD` nats, the reply is decoded again one token
  a pass from the prompt's cache (:func:`~spantune.infer.decode.greedy`).

The keep margin scores both replies on the decode's own cache cut back to the prompt
(:func:`~spantune.infer.decode.scored_after`, as PyTorch does): a few tokens a reply instead of a whole prompt.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from spantune.errors import SpantuneError
from spantune.infer.base import Prediction
from spantune.infer.decode import Greedy, greedy, scored_after, settled_by, stop_token_ids
from spantune.infer.keep import KeepMargin
from spantune.postprocess import postprocess
from spantune.prompt import encode_prompt
from spantune.schema import SpanExample

#: the graph input that limits the output layer to the last N positions (0 = all): transformers' name for it,
#: which Transformers.js feeds when a session has it; added by spantune.export.onnx.add_logits_to_keep
LOGITS_TO_KEEP = "num_logits_to_keep"
#: Transformers.js file suffix of each dtype (``onnx/model{suffix}.onnx``).
DTYPE_SUFFIX = {"fp32": "", "fp16": "_fp16", "q4": "_q4", "q4f16": "_q4f16", "q8": "_quantized", "int8": "_int8"}
_NUMPY_TYPE = {"tensor(float)": np.float32, "tensor(float16)": np.float16}

#: Leads (nats between greedy's token and the runner-up) below which a drafted reply is redone one token a pass,
#: per dtype (:func:`dtype_tie_guard`). Files that compute in float: drafted rows stray from one-token rows by
#: < 1e-4 nats, so 1e-3 is a bound with room to spare. int8 re-quantizes activations to 8 bits, which can turn that
#: rounding into a whole step: rows strayed by up to ~3 nats on a few spans, so 0.5 catches most near-ties (5 of the
#: 6 changed answers in 1,000 spans) at 13 % of those spans redone (7 % of the golden set), not all
#: (benchmarks/RESULTS.md, run 17); so does q4 at accuracy level 4, whose MatMulNBits quantizes activations to int8.
#: js/src/corrector.js: TIE_GUARD, the same numbers.
TIE_GUARD = {"int8": 0.5, "float": 1e-3}


def dtype_tie_guard(dtype: str, accuracy_level: int = 1) -> float:
    """The :data:`TIE_GUARD` of an exported file: int8's where activations are quantized to 8 bits (the int8 file,
    or 4-bit MatMulNBits at accuracy level 4), else the float files'."""
    return TIE_GUARD["int8"] if dtype == "int8" or accuracy_level == 4 else TIE_GUARD["float"]


#: The session setting for the 4-bit file's int4 DequantizeLinear + MatMul pairs (spantune.export.onnx): native
#: onnxruntime fuses each pair into MatMulNBits at this accuracy level (its default, 4, quantizes activations to
#: int8 and would move answers off the parity check's). js/src/corrector.js sets the same key in Node and on
#: WebGPU, and folds the pairs into fp32 weights in the browser's WASM build instead.
ACCURACY_LEVEL_KEY = "session.qdq_matmulnbits_accuracy_level"


def accuracy_level(model_dir: str | Path, dtype: str) -> int:
    """The export's MatMulNBits accuracy level for ``dtype`` (its manifest; 1, fp32 compute, if unrecorded)."""
    manifest = Path(model_dir) / "manifest.json"
    quant = json.loads(manifest.read_text()).get("quantization", {}) if manifest.is_file() else {}
    return int(quant.get(dtype, {}).get("accuracy_level", 1))


def onnx_file(model_dir: str | Path, dtype: str) -> Path:
    """Path of the ONNX decoder for ``dtype`` inside an export folder."""
    if dtype not in DTYPE_SUFFIX:
        raise SpantuneError(f"unknown ONNX dtype {dtype!r} (choose {', '.join(DTYPE_SUFFIX)})")
    return Path(model_dir) / "onnx" / f"model{DTYPE_SUFFIX[dtype]}.onnx"


#: ``ctx_before`` of the probe prompts whose common token prefix is the prompt head: first characters of every
#: class a byte-level or SentencePiece tokenizer may merge with the text before it (js/src/corrector.js: same).
HEAD_PROBES = ("", "a", "A", " a", "  ", "1", ".", "«", "»", "\\", "\n", "\t", "'", "é", "日本", "😀", "\u00a0", "\u0301")


def prompt_head_ids(tokenizer: Any) -> list[int]:
    """The longest token prefix shared by the prompts of :data:`HEAD_PROBES`: the chat template head, system
    prompt and the user turn's opening up to where user text starts, minus any token that user text can
    merge with. Every prompt is still checked against it (:meth:`PrefixCache.covers`)."""
    prompts = [encode_prompt(tokenizer, SpanExample(ctx_before=c, span_in="x", ctx_after="", span_out="x")).prompt
               for c in HEAD_PROBES]
    head = prompts[0]
    for ids in prompts[1:]:
        n = next((i for i, (a, b) in enumerate(zip(head, ids)) if a != b), min(len(head), len(ids)))
        head = head[:n]
    return head


@dataclass(frozen=True)
class PrefixCache:
    """The KV cache of the prompt head (:func:`prompt_head_ids`), computed once per loaded model."""

    ids: list[int]
    past: dict[str, np.ndarray]
    logits: np.ndarray

    def covers(self, ids: Sequence[int]) -> bool:
        """True when the head's ids are a true token prefix of ``ids`` with tokens after it: BPE can merge user
        text into the head's last tokens, so a prompt that starts with the head's text may not start with its ids."""
        n = len(self.ids)
        return len(ids) > n and list(ids[:n]) == self.ids


class OnnxDecoder:
    """One onnxruntime session over a merged decoder with past key values."""

    def __init__(self, path: str | Path, threads: int | None = None, accuracy_level: int = 1) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise SpantuneError(f"{path} not found: export the model with `spantune export` (and this dtype)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        opts.add_session_config_entry(ACCURACY_LEVEL_KEY, str(accuracy_level))
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
        #: exports since run 9 compute logits only for the rows asked for (spantune.export.onnx.add_logits_to_keep)
        self.rows_input = LOGITS_TO_KEEP in inputs

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

    def run(self, ids: Sequence[int], past_len: int, past: dict[str, np.ndarray],
            rows: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One forward pass over ``ids`` after ``past_len`` cached tokens: float32 logits of the last ``rows``
        positions ([rows, vocab]; 0 = all of ``ids``) and the KV cache that now also holds ``ids``."""
        feeds = self.step_feeds(np.asarray([ids], dtype=np.int64), past_len, past)
        if self.rows_input:
            feeds[LOGITS_TO_KEEP] = np.asarray(rows, dtype=np.int64)
        outputs = dict(zip(self.output_names, self.session.run(None, feeds)))
        present = {name: outputs[name.replace("past_key_values.", "present.")] for name in self.past_names}
        logits = outputs["logits"][0].astype(np.float32)
        return (logits[-rows:] if rows else logits), present

    def prefix_cache(self, ids: list[int]) -> PrefixCache:
        """The KV cache (and logits) of ``ids`` from an empty cache, for :meth:`greedy` and :meth:`logits`."""
        logits, past = self.run(ids, 0, self.empty_past())
        return PrefixCache(ids=list(ids), past=past, logits=logits)

    def logits(self, ids: list[int], prefix: PrefixCache | None = None, rows: int = 0) -> np.ndarray:
        """float32 logits of the last ``rows`` of ``ids`` (0 = all; row i predicts the token after its position):
        one forward pass from ``prefix``'s cache when it covers ``ids``, else from an empty cache."""
        if prefix is None or not prefix.covers(ids):
            return self.run(ids, 0, self.empty_past(), rows)[0]
        rest = ids[len(prefix.ids):]
        if 0 < rows <= len(rest):
            return self.run(rest, len(prefix.ids), prefix.past, rows)[0]
        full = np.concatenate([prefix.logits, self.run(rest, len(prefix.ids), prefix.past)[0]])
        return full[-rows:] if rows else full

    def greedy(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: Iterable[int],
               keep_logits: bool = False, until: Callable[[list[int]], bool] | None = None,
               prefix: PrefixCache | None = None, draft_source: Sequence[int] = (), draft_len: int = 8) -> Greedy:
        """:func:`spantune.infer.decode.greedy` from ``prefix``'s cache when it covers ``prompt_ids``, else from an
        empty cache (its arguments: the same meaning)."""
        stepper, pending = self.start(prompt_ids, prefix)
        return greedy(stepper, pending, max_new_tokens, stop_ids, keep_logits=keep_logits, until=until,
                      draft_source=draft_source, draft_len=draft_len)

    def start(self, prompt_ids: Sequence[int], prefix: PrefixCache | None = None) -> tuple[OnnxStepper, list[int]]:
        """A decode's stepper, from ``prefix``'s cache when it covers ``prompt_ids`` (else empty), and the prompt
        ids it has still to run."""
        if prefix is not None and prefix.covers(prompt_ids):
            return OnnxStepper(self, prefix.past, len(prefix.ids)), list(prompt_ids[len(prefix.ids):])
        return OnnxStepper(self, self.empty_past(), 0), list(prompt_ids)


class OnnxStepper:
    """One decode's KV cache over an :class:`OnnxDecoder` (:class:`spantune.infer.decode.Stepper`); it starts from
    ``past`` holding ``length`` tokens (a shared prefix cache is never written: each step makes new arrays)."""

    def __init__(self, decoder: OnnxDecoder, past: dict[str, np.ndarray], length: int) -> None:
        self.decoder = decoder
        self.past = past
        self.length = length

    def cached(self) -> int:
        return self.length

    def crop(self, length: int) -> None:
        self.length = length
        self.past = {name: np.ascontiguousarray(kv[:, :, :length]) for name, kv in self.past.items()}

    def step(self, ids: list[int], rows: int, drop: int) -> np.ndarray:
        if drop:  # wrong guesses: drop their keys and values
            self.crop(self.length - drop)
        logits, self.past = self.decoder.run(ids, self.length, self.past, rows)
        self.length += len(ids)
        return logits


def stop_ids_from_folder(model_dir: Path, tokenizer: Any) -> list[int]:
    """End ids written by the export (generation_config.json), else the tokenizer's."""
    gen = model_dir / "generation_config.json"
    ids = json.loads(gen.read_text()).get("eos_token_id") if gen.is_file() else None
    if ids is None:
        return stop_token_ids(tokenizer)
    return [int(i) for i in (ids if isinstance(ids, list) else [ids])]


class OnnxCorrector:
    """The :class:`~spantune.infer.base.Corrector` for an exported folder (``--system onnx:DIR``); ``keep``
    is the keep margin (off by default), scored with one short pass per reply. ``prefix_cache`` and
    ``copy_draft`` (both on: same answers, fewer and shorter passes) are the speed-ups of the module docstring,
    ``tie_guard`` the lead below which a drafted reply is redone one token a pass (None: the dtype's
    :data:`TIE_GUARD`)."""

    def __init__(self, model_dir: str | Path, dtype: str = "q4", max_new_tokens: int = 32,
                 threads: int | None = None, name: str | None = None, keep: KeepMargin = KeepMargin(),
                 prefix_cache: bool = True, copy_draft: bool = True, tie_guard: float | None = None) -> None:
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "tokenizer.json").is_file():
            raise SpantuneError(f"{self.model_dir} is not an exported model folder (no tokenizer.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        level = accuracy_level(self.model_dir, dtype)
        self.decoder = OnnxDecoder(onnx_file(self.model_dir, dtype), threads, level)
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self.stop_ids = stop_ids_from_folder(self.model_dir, self.tokenizer)
        self.name = name or f"onnx:{self.model_dir}:{dtype}"
        self.keep = keep
        self.prefix = self.decoder.prefix_cache(prompt_head_ids(self.tokenizer)) if prefix_cache else None
        self.copy_draft = copy_draft
        self.tie_guard = dtype_tie_guard(dtype, level) if tie_guard is None else tie_guard
        self.settled = settled_by(self.tokenizer)

    def prompt_ids(self, example: SpanExample) -> list[int]:
        """Token ids of the prompt (:func:`~spantune.prompt.encode_prompt`: user text never becomes a special token)."""
        return encode_prompt(self.tokenizer, example).prompt

    def _encode(self, example: SpanExample) -> tuple[list[int], list[int]]:
        """Prompt ids, and the draft source: ``span_in`` as the reply (empty without copy drafts)."""
        if not self.copy_draft:
            return self.prompt_ids(example), []
        ids = encode_prompt(self.tokenizer, dataclasses.replace(example, span_out=example.span_in), with_answer=True)
        return ids.prompt, ids.reply

    def whole_pass(self, ids: list[int], start: int) -> np.ndarray:
        """Logits of ``ids`` from position ``start`` in one pass from the prefix cache when it covers them."""
        return self.decoder.logits(ids, self.prefix, rows=len(ids) - start)

    def correct_greedy(self, example: SpanExample, keep_logits: bool = False) -> tuple[Prediction, Greedy]:
        """The prediction and the decode behind it (token ids, and each step's logits if asked)."""
        t0 = time.perf_counter()
        prompt_ids, draft_source = self._encode(example)
        stepper, pending = self.decoder.start(prompt_ids, self.prefix)
        out = greedy(stepper, pending, self.max_new_tokens, self.stop_ids, keep_logits=keep_logits, until=self.settled,
                     draft_source=draft_source, tie_guard=self.tie_guard)
        raw = self.tokenizer.decode(out.tokens, skip_special_tokens=True)
        pred = Prediction(raw=raw, result=postprocess(raw, example.span_in), latency_s=0.0,
                          new_tokens=len(out.tokens))
        pred = self.keep.apply(pred, example, out.tokens, self.tokenizer,
                               partial(scored_after, stepper, prompt_ids, whole=self.whole_pass))
        return dataclasses.replace(pred, latency_s=time.perf_counter() - t0), out

    def correct(self, example: SpanExample) -> Prediction:
        return self.correct_greedy(example)[0]
