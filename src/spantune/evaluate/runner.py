"""Run a corrector over examples, appending every prediction to predictions.jsonl as it comes.

Appending (flushed per line) instead of one atomic write is deliberate: Ctrl-C or a kill keeps every
finished prediction, and ``--resume`` continues after the last complete line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from spantune.errors import InputError, SpantuneError
from spantune.evaluate.metrics import EvalRow, make_row
from spantune.infer.base import Corrector
from spantune.io import write_json
from spantune.schema import SpanExample, dumps

PREDICTIONS = "predictions.jsonl"
RUN_META = "run.json"


def read_predictions(path: str | Path, repair: bool = False) -> list[EvalRow]:
    """Rows of a predictions.jsonl. A last line cut short by a kill is an error, or with ``repair``
    is cut from the file so appending can continue."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, None, "<file>", exc.strerror or str(exc)) from None
    complete, _, tail = data.rpartition(b"\n")
    if tail.strip():
        if not repair:
            raise InputError(path, complete.count(b"\n") + 2, "<line>", "incomplete last line (the run was killed)")
        with open(path, "r+b") as fh:
            fh.truncate(len(complete) + 1 if complete else 0)
    rows = []
    for lineno, line in enumerate(complete.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, lineno, "<json>", f"malformed JSON: {exc}") from None
        rows.append(EvalRow.from_dict(d, str(path), lineno))
    return rows


def open_run(out_dir: str | Path, meta: dict[str, Any], resume: bool) -> dict[str, EvalRow]:
    """Start a run in ``out_dir`` (recording ``meta`` in run.json), or check and reopen one with ``resume``.

    Returns the rows a resumed run already has, by example key.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred_path, meta_path = out_dir / PREDICTIONS, out_dir / RUN_META
    if not resume:
        if pred_path.exists():
            raise SpantuneError(f"{pred_path} already exists: pass --resume to continue that run, "
                                "or choose another --out")
        write_json(meta_path, meta)
        pred_path.write_bytes(b"")
        return {}
    if not meta_path.is_file() or not pred_path.is_file():
        raise SpantuneError(f"--resume: {out_dir} holds no run to continue ({RUN_META} and {PREDICTIONS} needed)")
    old = json.loads(meta_path.read_text(encoding="utf-8"))
    for key, value in meta.items():
        if old.get(key) != value:
            raise SpantuneError(f"--resume: {out_dir} was started with {key}={old.get(key)!r}, "
                                f"not {value!r}; use another --out")
    return {row.key: row for row in read_predictions(pred_path, repair=True)}


def run_corrector(corrector: Corrector, todo: Sequence[SpanExample], out_dir: str | Path, *,
                  already: int = 0, progress: bool = True) -> tuple[list[EvalRow], bool]:
    """Correct ``todo``, appending each row to predictions.jsonl; returns the new rows and whether
    Ctrl-C stopped the loop (the rows so far are kept either way)."""
    rows: list[EvalRow] = []
    with open(Path(out_dir) / PREDICTIONS, "a", encoding="utf-8") as fh, \
            tqdm(total=already + len(todo), initial=already, desc=f"eval {corrector.name}", unit="span",
                 disable=not progress) as bar:
        try:
            for ex in todo:
                row = make_row(ex, corrector.correct(ex))
                fh.write(dumps(row.to_dict()) + "\n")
                fh.flush()
                rows.append(row)
                bar.update()
        except KeyboardInterrupt:
            return rows, True
    return rows, False
