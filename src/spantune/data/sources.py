"""Readers for real corrections (line-aligned files, TSV, JSONL, M2) and for clean text.

Every reader validates the whole file before anything is built, and a bad line raises
:class:`~spantune.errors.InputError` (``FILE:LINE: field: message``), so a build never writes
partial output from half-read input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

from spantune.data.align import Edit
from spantune.data.document import InDocument
from spantune.data.tags import errant_tag, heuristic_tag
from spantune.data.text import Sentence, detokenize
from spantune.errors import InputError


#: A light tokenizer for raw text: words (with inner apostrophes) and single punctuation marks.
_TOKEN_RE = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")

#: NUCLE/CoNLL-2014 M2 types → our tags (ERRANT-style types go through :func:`errant_tag`).
_NUCLE_TAGS = {
    "ArtOrDet": "article", "Prep": "preposition", "SVA": "agreement", "Vform": "verb_form", "Vt": "verb_form",
    "Nn": "noun_number", "Wci": "word_choice", "Wform": "word_form", "WOinc": "word_order",
    "WOadv": "word_order", "Npos": "punctuation", "Rloc-": "extra_word", "Vm": "missing_word",
    "Pform": "word_choice", "Wtone": "word_choice", "Trans": "word_choice", "Pref": "word_choice",
}


@dataclass
class Pair:
    """One original sentence and its human corrections (with edits when the file gives them)."""

    orig: Sentence
    corrections: list[Sentence]
    group: str
    source: str
    edits: list[list[Edit]] | None = None
    #: BEA essays: the sentence's paragraph and character edits (contexts come from the essay itself).
    document: InDocument | None = None
    #: Which side of the data this sentence may land on: auto (held out by fraction), train or eval.
    split: str = "auto"


@dataclass
class CleanLine:
    """A sentence of correct text, for synthetic errors and no-op examples."""

    sentence: Sentence
    group: str
    source: str


def read_lines(path: str | Path, *, allow_empty: bool = False) -> list[str]:
    """All lines of a UTF-8 text file; an unreadable file, bad UTF-8 or an empty line names FILE:LINE."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, None, "<file>", exc.strerror or str(exc)) from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for lineno, line in enumerate(lines, 1):
        try:
            text = line.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(path, lineno, "<line>", f"invalid UTF-8 at byte {exc.start}") from None
        if not text.strip() and not allow_empty:
            raise InputError(path, lineno, "<line>", "empty line (every line must hold a sentence)")
        out.append(text)
    return out


def to_sentence(text: str, tokenized: bool) -> Sentence:
    """Tokenized corpora keep their tokens and get rule-based spacing; raw text keeps its own spaces."""
    if tokenized:
        return detokenize(text.split())
    tokens: list[str] = []
    flags: list[bool] = []
    for m in _TOKEN_RE.finditer(text):
        flags.append(m.start() > 0 and text[m.start() - 1].isspace())
        tokens.append(m.group())
    return Sentence(tuple(tokens), tuple(flags))


def _check_text(text: str, path: str | Path, lineno: int, name: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError(path, lineno, name, "expected a non-empty string")
    return text


def read_line_aligned(src: str | Path, refs: list[str | Path], *, name: str, tokenized: bool) -> list[Pair]:
    """A source file and reference files aligned line by line (the JFLEG layout)."""
    src_lines = read_lines(src)
    ref_lines = [read_lines(r) for r in refs]
    for ref, lines in zip(refs, ref_lines):
        if len(lines) != len(src_lines):
            first_bad = min(len(lines), len(src_lines)) + 1
            raise InputError(ref, first_bad, "<lines>",
                             f"{len(lines)} lines but {src} has {len(src_lines)}; parallel files must align line by line")
    return [Pair(to_sentence(s, tokenized), [to_sentence(r[i], tokenized) for r in ref_lines], f"{name}:{i + 1}", name)
            for i, s in enumerate(src_lines)]


def read_tsv(path: str | Path, *, name: str, tokenized: bool) -> list[Pair]:
    """``source<TAB>correction[<TAB>correction…]`` per line."""
    pairs = []
    for lineno, line in enumerate(read_lines(path), 1):
        cols = line.split("\t")
        if len(cols) < 2:
            raise InputError(path, lineno, "<columns>", "expected source<TAB>correction")
        for col in cols:
            _check_text(col, path, lineno, "<columns>")
        pairs.append(Pair(to_sentence(cols[0], tokenized), [to_sentence(c, tokenized) for c in cols[1:]],
                          f"{name}:{lineno}", name))
    return pairs


def json_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every line of a JSON-lines file; a line that is not an object raises."""
    for lineno, line in enumerate(read_lines(path), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, lineno, "<json>", f"malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(path, lineno, "<record>", "expected a JSON object")
        yield lineno, obj


def read_parallel_jsonl(path: str | Path, *, name: str, tokenized: bool) -> list[Pair]:
    """``{"source": "...", "target": "..." | ["...", ...]}`` per line."""
    pairs = []
    for lineno, obj in json_records(path):
        source = _check_text(obj.get("source"), path, lineno, "source")
        targets = obj.get("target")
        targets = [targets] if isinstance(targets, str) else targets
        if not isinstance(targets, list) or not targets:
            raise InputError(path, lineno, "target", "expected a string or a non-empty list of strings")
        for t in targets:
            _check_text(t, path, lineno, "target")
        pairs.append(Pair(to_sentence(source, tokenized), [to_sentence(t, tokenized) for t in targets],
                          f"{name}:{lineno}", name))
    return pairs


def m2_tag(kind: str, o: str, c: str) -> str:
    """Tag an M2 edit from its annotated type (ERRANT or NUCLE scheme) and text."""
    if ":" in kind:
        return errant_tag(kind, o, c)
    return _NUCLE_TAGS.get(kind) or heuristic_tag(o, c)


def read_m2(path: str | Path, *, name: str) -> list[Pair]:
    """CoNLL-2014/BEA-2019 M2: ``S tokens`` then ``A start end|||type|||correction|||…|||annotator``."""
    lines = read_lines(path, allow_empty=True)
    pairs: list[Pair] = []
    block: list[tuple[int, str]] = []
    for lineno, line in [*enumerate(lines, 1), (len(lines) + 1, "")]:
        if line.strip():
            block.append((lineno, line))
        elif block:
            pairs.append(_m2_block(block, path, name))
            block = []
    return pairs


def _m2_block(block: list[tuple[int, str]], path: str | Path, name: str) -> Pair:
    lineno, head = block[0]
    if not head.startswith("S "):
        raise InputError(path, lineno, "M2", f"expected a sentence line 'S …', got {head[:30]!r}")
    tokens = head[2:].split()
    if not tokens:
        raise InputError(path, lineno, "M2", "empty sentence")
    by_annotator: dict[str, list[tuple[int, int, int, str, list[str]]]] = {}
    for ln, line in block[1:]:
        if not line.startswith("A "):
            raise InputError(path, ln, "M2", f"expected an edit line 'A …', got {line[:30]!r}")
        fields = line[2:].split("|||")
        if len(fields) != 6:
            raise InputError(path, ln, "M2", f"expected 6 '|||'-separated fields, got {len(fields)}")
        try:
            start, end = (int(x) for x in fields[0].split())
        except ValueError:
            raise InputError(path, ln, "M2", f"bad token offsets {fields[0]!r} (expected 'start end')") from None
        annotator = fields[5].strip()
        by_annotator.setdefault(annotator, [])
        if start == -1 and end == -1:  # "no edit" marker: the sentence is correct for this annotator
            continue
        if not 0 <= start <= end <= len(tokens):
            raise InputError(path, ln, "M2", f"offsets {start} {end} outside the {len(tokens)}-token sentence")
        correction = fields[2].strip()
        new = [] if correction in ("", "-NONE-") else correction.split()
        by_annotator[annotator].append((start, end, ln, fields[1], new))
    orig = detokenize(tokens)
    corrections, all_edits = [], []
    for annotator in sorted(by_annotator, key=lambda a: (len(a), a)):
        corr_tokens: list[str] = []
        edits: list[Edit] = []
        pos = 0
        for start, end, ln, kind, new in sorted(by_annotator[annotator], key=lambda x: (x[0], x[1])):
            if start < pos:
                raise InputError(path, ln, "M2", f"edit {start} {end} overlaps the previous edit of annotator {annotator}")
            corr_tokens += tokens[pos:start]
            c_start = len(corr_tokens)
            corr_tokens += new
            edits.append(Edit(start, end, c_start, len(corr_tokens),
                              m2_tag(kind, " ".join(tokens[start:end]), " ".join(new)), kind))
            pos = end
        corr_tokens += tokens[pos:]
        if not corr_tokens:
            raise InputError(path, block[-1][0], "M2", f"annotator {annotator} deletes the whole sentence")
        corrections.append(detokenize(corr_tokens))
        all_edits.append(edits)
    if not corrections:  # a sentence with no edit lines at all is correct as it stands
        corrections, all_edits = [orig], [[]]
    return Pair(orig, corrections, f"{name}:{lineno}", name, all_edits)


def read_clean(path: str | Path, *, name: str, tokenized: bool) -> list[CleanLine]:
    """Plain text, one correct sentence per line (blank lines are skipped, not errors)."""
    return [CleanLine(to_sentence(line, tokenized), f"{name}:{i}", name)
            for i, line in enumerate(read_lines(path, allow_empty=True), 1) if line.strip()]
