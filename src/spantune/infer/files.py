"""Correct a whole JSONL file with any corrector, with a progress bar and atomic output."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from spantune.infer.base import Corrector
from spantune.schema import dumps, read_jsonl, write_lines


def correct_file(corrector: Corrector, in_path: str | Path, out_path: str | Path, *, clip: bool = False) -> int:
    """Write each input example with ``prediction`` and its post-processing flags added (and the keep
    margin's ``kept`` and log-probabilities when it scored the answer)."""
    examples = read_jsonl(in_path, clip=clip)

    def lines():
        for ex in tqdm(examples, desc=f"fix {Path(in_path).name}", unit="span"):
            pred = corrector.correct(ex)
            scores = {k: getattr(pred, k) for k in ("kept", "keep_logprob", "answer_logprob")
                      if getattr(pred, k) is not None}
            yield dumps({**ex.to_dict(), "prediction": pred.text, "raw": pred.raw,
                         **{k: v for k, v in pred.result.to_dict().items() if k != "text"},
                         "latency_s": round(pred.latency_s, 4), **scores})

    return write_lines(out_path, lines())
