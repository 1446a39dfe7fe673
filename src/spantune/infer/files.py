"""Correct a whole JSONL file with any corrector, with a progress bar and atomic output."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from spantune.infer.base import KEEP_SCORES, Corrector
from spantune.schema import SpanExample, dumps, write_lines


def correct_file(corrector: Corrector, examples: list[SpanExample], out_path: str | Path, *, label: str = "fix") -> int:
    """Write each example with ``prediction`` and its post-processing flags added (and the keep margin's
    ``kept`` and log-probabilities when it scored the answer). The caller reads (and so validates) the input
    first, so a bad line is reported before a model is loaded."""

    def lines():
        for ex in tqdm(examples, desc=label, unit="span"):
            pred = corrector.correct(ex)
            scores = {k: getattr(pred, k) for k in KEEP_SCORES if getattr(pred, k) is not None}
            yield dumps({**ex.to_dict(), "prediction": pred.text, "raw": pred.raw,
                         **{k: v for k, v in pred.result.to_dict().items() if k != "text"},
                         "latency_s": round(pred.latency_s, 4), **scores})

    return write_lines(out_path, lines())
