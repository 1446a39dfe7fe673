"""Artifacts for the JavaScript tests: an exported tiny model and what Python computes on it.

``python -m support.export_fixture OUT`` from tests/ (run by ``npm test``'s pretest step) writes into OUT:

* ``model/``: a tiny random Qwen2 exported by ``spantune export`` (fp32 + q4, parity-checked);
* ``expected.jsonl``: per prompt, the rendered chat prompt, and Python onnxruntime's greedy token ids,
  raw text and post-processed result for each dtype — Transformers.js must reproduce them exactly;
* ``random_cases.jsonl``: seeded random inputs (odd whitespace, «», backslashes, combining marks, emoji,
  labels) with Python's clip / select / prompt / post-processing results, in prompt_cases.jsonl's format;
* ``stamp.json``: the sha256 of every spantune and test-support source file the build imported (and of the
  prompt cases), with the package versions. A re-run that finds them unchanged does nothing, so the step
  costs ~1 s when nothing changed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import spantune
from spantune.errors import SpantuneError
from spantune.io import atomic_dir, sha256_file, write_json
from spantune.versions import package_versions
from spantune.schema import SpanExample, dumps, write_jsonl, write_lines

SUPPORT = Path(__file__).resolve().parent
FIXTURES = SUPPORT.parents[1] / "fixtures"
PROMPT_CASES = FIXTURES / "prompt_cases.jsonl"
#: Where the files a stamp names live: ``ROOT/relative/path``.
ROOTS = {"spantune": Path(spantune.__file__).resolve().parent, "support": SUPPORT, "fixtures": FIXTURES}
DTYPES = ("fp32", "q4", "q8", "int8")
#: std of the re-initialised weights: the default 0.02 makes a tiny model repeat one token forever,
#: which would make "same tokens as Python" a check that cannot fail.
LIVELY_STD = 0.3
EXTRA_EXAMPLES = [
    SpanExample(ctx_before="I has", span_in="went to the", ctx_after=" store.", span_out="went to the"),
    SpanExample(ctx_before="", span_in="Their", ctx_after=" going home now.", span_out="They're"),
    SpanExample(ctx_before="The results was", span_in="suprising", ctx_after=" to everyone.", span_out="surprising"),
]


def lively_tiny_model(out: Path, seed: int = 0, std: float = LIVELY_STD) -> Path:
    """The conftest tiny model with weights redrawn at ``std``, so greedy decoding emits varied tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from support.tiny import build_tiny_model

    build_tiny_model(out, seed=seed)
    model = AutoModelForCausalLM.from_pretrained(out)
    model.config.initializer_range = std
    torch.manual_seed(seed)
    model.apply(model._init_weights)
    model.save_pretrained(out)
    return out


def loaded_sources() -> list[str]:
    """The spantune and test-support files imported so far, as ``ROOT/relative`` names. Taken after a build, they
    are every source whose change can change the artifacts, so no list of files is kept by hand."""
    names = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        for root in ("spantune", "support"):
            if path.is_relative_to(ROOTS[root]):
                names.add(f"{root}/{path.relative_to(ROOTS[root]).as_posix()}")
    return sorted(names)


def file_hashes(names: list[str]) -> dict[str, str | None]:
    """sha256 of each named file (:data:`ROOTS`), None for one that is gone."""
    paths = {name: ROOTS[name.split("/", 1)[0]] / name.split("/", 1)[1] for name in names}
    return {name: sha256_file(path) if path.is_file() else None for name, path in paths.items()}


def up_to_date(stamp: Path) -> bool:
    """True when ``stamp`` names the files and package versions a build would use now, all unchanged."""
    if not stamp.is_file():
        return False
    recorded = json.loads(stamp.read_text())
    files = recorded.get("files")
    return (isinstance(files, dict) and recorded.get("packages") == package_versions()
            and files == file_hashes(list(files)))


def e2e_examples() -> list[SpanExample]:
    """The prompt cases of fixtures/prompt_cases.jsonl (escaping, astral characters…) plus a few sentences."""
    out = list(EXTRA_EXAMPLES)
    if PROMPT_CASES.is_file():
        for line in PROMPT_CASES.read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            if case["kind"] == "prompt":
                i = case["input"]
                out.append(SpanExample(ctx_before=i["ctx_before"], span_in=i["span_in"], ctx_after=i["ctx_after"],
                                       span_out=i["span_in"], id=case.get("note", "")))
    return out


_PIECES = ["a", "e", "word", "The", "it are", "Span:", "Corrected: ", "answer:", " ", "  ", "\t", "\n", "\r\n",
           "\u00a0", "\u2009", "\u3000", "\u2028", "\x1c", "\x85", "\ufeff", "«", "»", "\\", "\\n", '"', "'", "“", "”",
           "`", "„", "e\u0301", "\u0301", "👍", "👍🏽", "👨\u200d👩\u200d👧", "\u200d", "\ufffd", "🇫🇷",
           "☺\ufe0f", "ß", "ſpan:",
           "İ", "Ω", "日本語", "x" * 30, ".", ",", "!"]


def _random_text(rng: random.Random, max_pieces: int) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, max_pieces)))


def random_cases(n: int = 300, seed: int = 1234) -> list[dict[str, Any]]:
    """Python's answers on seeded random inputs; an error becomes ``{"error": message}``."""
    from spantune.postprocess import postprocess, settled
    from spantune.prompt import SYSTEM_PROMPT, clip_after, clip_before, select_span, user_message

    rng = random.Random(seed)
    cases: list[dict[str, Any]] = []
    for _ in range(n):
        text = _random_text(rng, 40)
        limit = rng.choice([0, 1, 5, 10, 20, 60])
        cases.append({"kind": "clip", "input": {"text": text, "limit": limit},
                      "expected": {"before": clip_before(text, limit), "after": clip_after(text, limit)}})
        length = len(text)
        start = rng.randint(0, length)
        end = rng.choice([None, start, rng.randint(start, length)])
        try:
            b, s, a = select_span(text, start, end)
            expected: dict[str, Any] = {"ctx_before": b, "span_in": s, "ctx_after": a}
        except SpantuneError as exc:
            expected = {"error": str(exc)}
        cases.append({"kind": "select", "input": {"text": text, "start": start, "end": end}, "expected": expected})
        fields = {"ctx_before": _random_text(rng, 8), "span_in": _random_text(rng, 4),
                  "ctx_after": _random_text(rng, 8)}
        cases.append({"kind": "prompt", "input": fields,
                      "expected": {"system": SYSTEM_PROMPT, "user": user_message(**fields)}})
        raw, span = _random_text(rng, 12), _random_text(rng, 4)
        cases.append({"kind": "postprocess", "input": {"raw": raw, "span_in": span},
                      "expected": postprocess(raw, span).to_dict()})
        cases.append({"kind": "settled", "input": {"raw": raw}, "expected": settled(raw)})
    return cases


def expected_outputs(model_dir: Path, examples: list[SpanExample]) -> list[dict[str, Any]]:
    """Python onnxruntime's greedy decode of every example with every dtype."""
    from spantune.infer.onnx_backend import OnnxCorrector
    from spantune.prompt import render

    rows = [{"example": ex.to_dict(), "prompt": None, "prompt_ids": None, "outputs": {}} for ex in examples]
    for dtype in DTYPES:
        corrector = OnnxCorrector(model_dir, dtype=dtype)
        for row, ex in zip(rows, examples):
            pred, out = corrector.correct_greedy(ex)
            row["prompt"], row["prompt_ids"] = render(corrector.tokenizer, ex), corrector.prompt_ids(ex)
            row["outputs"][dtype] = {"tokens": out.tokens, "raw": pred.raw, "result": pred.result.to_dict()}
    return rows


def build(out: Path, force: bool = False) -> bool:
    """(Re)build the artifacts in ``out`` unless its stamp matches; returns whether it built."""
    from spantune.export import ExportOptions, export_model

    if not force and up_to_date(out / "stamp.json"):
        print(f"JS test artifacts in {out} are up to date", file=sys.stderr)
        return False
    examples = e2e_examples()
    with atomic_dir(out) as tmp:
        lively_tiny_model(tmp / "source")
        write_jsonl(tmp / "examples.jsonl", examples)
        export_model(ExportOptions(model=str(tmp / "source"), out=tmp / "model", dtypes=DTYPES,
                                   verify_data=tmp / "examples.jsonl"))
        write_lines(tmp / "expected.jsonl", (dumps(r) for r in expected_outputs(tmp / "model", examples)))
        write_lines(tmp / "random_cases.jsonl", (dumps(c) for c in random_cases()))
        sources = [*loaded_sources(), f"fixtures/{PROMPT_CASES.name}"]
        write_json(tmp / "stamp.json", {"files": file_hashes(sources), "packages": package_versions()})
    print(f"wrote JS test artifacts to {out}", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m support.export_fixture", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="artifact folder (js/test/.artifacts)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = parser.parse_args(argv)
    try:
        build(Path(args.out), force=args.force)
    except SpantuneError as exc:
        print(f"spantune: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
