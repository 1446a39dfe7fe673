"""The span example: typed record, JSONL readers/writers (span and chat forms), validation.

Every later stage reads data through :func:`read_jsonl` so that a bad line is reported the same way
everywhere: ``FILE:LINE: field: message``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spantune.errors import InputError
from spantune.io import atomic_write
from spantune.prompt import LINE_BREAKS, MAX_CONTEXT, build_messages, clip_after, clip_before, parse_user_message

#: Lines longer than this (bytes) are rejected: a span example is a few hundred bytes.
MAX_LINE_BYTES = 16 * 1024
REQUIRED = ("ctx_before", "span_in", "ctx_after", "span_out")
OPTIONAL_STR = ("id", "language", "source")
KNOWN = (*REQUIRED, *OPTIONAL_STR, "tags")


@dataclass
class SpanExample:
    """One band-bounded correction: the model sees the contexts and ``span_in``, returns ``span_out``."""

    ctx_before: str
    span_in: str
    ctx_after: str
    span_out: str
    id: str = ""
    language: str | None = None
    tags: list[str] = field(default_factory=list)
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_noop(self) -> bool:
        return self.span_in == self.span_out

    def to_dict(self) -> dict[str, Any]:
        """JSON form; empty optional fields are omitted, unknown fields come back as read."""
        out: dict[str, Any] = {}
        if self.id:
            out["id"] = self.id
        if self.language is not None:
            out["language"] = self.language
        out.update(ctx_before=self.ctx_before, span_in=self.span_in, ctx_after=self.ctx_after,
                   span_out=self.span_out)
        if self.tags:
            out["tags"] = list(self.tags)
        if self.source is not None:
            out["source"] = self.source
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Any, path: str | Path = "<input>", line: int | None = None, *,
                  clip: bool = False, max_context: int = MAX_CONTEXT) -> SpanExample:
        """Validate and build; raises :class:`InputError` naming the first bad field."""
        if not isinstance(d, dict):
            raise InputError(path, line, "<record>", f"expected a JSON object, got {type(d).__name__}")
        if "messages" in d and not any(k in d for k in REQUIRED):
            return from_chat(d, path, line, clip=clip, max_context=max_context)
        for name in REQUIRED:
            if name not in d:
                raise InputError(path, line, name, "missing required field")
            if not isinstance(d[name], str):
                raise InputError(path, line, name, f"expected a string, got {type(d[name]).__name__}")
        for name in OPTIONAL_STR:
            if d.get(name) is not None and not isinstance(d[name], str):
                raise InputError(path, line, name, f"expected a string, got {type(d[name]).__name__}")
        tags = d.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise InputError(path, line, "tags", "expected a list of strings")
        if not d["span_in"].strip():
            raise InputError(path, line, "span_in", "empty span")
        for name in ("span_in", "span_out"):
            if any(ch in LINE_BREAKS for ch in d[name]):
                raise InputError(path, line, name, "contains a line break; a span is part of one line")
        before, after = d["ctx_before"], d["ctx_after"]
        for name, text in (("ctx_before", before), ("ctx_after", after)):
            if len(text) > max_context and not clip:
                raise InputError(path, line, name, f"{len(text)} characters, over the {max_context}-character "
                                 "context limit (use --clip to clip at a word boundary)")
        if clip:
            before, after = clip_before(before, max_context), clip_after(after, max_context)
        return cls(ctx_before=before, span_in=d["span_in"], ctx_after=after, span_out=d["span_out"],
                   id=d.get("id") or "", language=d.get("language"), tags=list(tags), source=d.get("source"),
                   extra={k: v for k, v in d.items() if k not in KNOWN})


def to_chat(example: SpanExample) -> dict[str, Any]:
    """Chat-style record; metadata rides along under ``meta`` so the round trip loses nothing."""
    meta = {k: v for k, v in example.to_dict().items() if k not in REQUIRED}
    record: dict[str, Any] = {"messages": build_messages(example, with_answer=True)}
    if meta:
        record["meta"] = meta
    return record


def from_chat(record: dict[str, Any], path: str | Path = "<input>", line: int | None = None, *,
              clip: bool = False, max_context: int = MAX_CONTEXT) -> SpanExample:
    """Parse a chat record whose user turn was built by :func:`spantune.prompt.user_message`."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InputError(path, line, "messages", "expected a list of {role, content} objects")
    by_role = {m.get("role"): m.get("content") for m in messages}
    for role in ("user", "assistant"):
        if not isinstance(by_role.get(role), str):
            raise InputError(path, line, f"messages.{role}", "missing or not a string")
    try:
        before, span, after = parse_user_message(by_role["user"])
    except ValueError as exc:
        raise InputError(path, line, "messages.user", str(exc)) from None
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        raise InputError(path, line, "meta", "expected an object")
    flat = {**meta, "ctx_before": before, "span_in": span, "ctx_after": after, "span_out": by_role["assistant"]}
    return SpanExample.from_dict(flat, path, line, clip=clip, max_context=max_context)


@dataclass
class CheckResult:
    """Outcome of validating a file: good examples with their raw lines, and every bad line's error."""

    good: list[tuple[int, SpanExample, str]] = field(default_factory=list)
    bad: list[tuple[int, InputError, str]] = field(default_factory=list)


def _parse_line(raw: bytes, path: str | Path, lineno: int, clip: bool, max_context: int) -> SpanExample:
    if len(raw) > MAX_LINE_BYTES:
        raise InputError(path, lineno, "<line>", f"{len(raw)} bytes, over the {MAX_LINE_BYTES}-byte line limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, lineno, "<line>", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, lineno, "<json>", f"malformed JSON: {exc.msg} (column {exc.colno})") from None
    return SpanExample.from_dict(obj, path, lineno, clip=clip, max_context=max_context)


def _raw_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with 1-based numbers, as bytes so bad UTF-8 is reported, not raised."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(path, None, "<file>", exc.strerror or str(exc)) from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            raw = raw.rstrip(b"\r\n")
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):  # editors on Windows write one
                raw = raw[len(codecs.BOM_UTF8):]
            if raw.strip():
                yield lineno, raw


def check_jsonl(path: str | Path, *, clip: bool = False, max_context: int = MAX_CONTEXT) -> CheckResult:
    """Validate every line of a span or chat JSONL file, collecting all errors."""
    result = CheckResult()
    for lineno, raw in _raw_lines(path):
        text = raw.decode("utf-8", errors="replace")
        try:
            result.good.append((lineno, _parse_line(raw, path, lineno, clip, max_context), text))
        except InputError as err:
            result.bad.append((lineno, err, text))
    return result


def iter_jsonl(path: str | Path, *, clip: bool = False, max_context: int = MAX_CONTEXT) -> Iterator[SpanExample]:
    """Stream examples, raising :class:`InputError` at the first bad line."""
    for lineno, raw in _raw_lines(path):
        yield _parse_line(raw, path, lineno, clip, max_context)


def read_jsonl(path: str | Path, *, clip: bool = False, max_context: int = MAX_CONTEXT) -> list[SpanExample]:
    """All examples of a span or chat JSONL file; the first bad line raises :class:`InputError`."""
    return list(iter_jsonl(path, clip=clip, max_context=max_context))


def dumps(record: dict[str, Any]) -> str:
    """The one JSON line format every spantune output uses (stable bytes for hashing)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def write_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Atomically write text lines (each gets a newline); returns how many."""
    n = 0
    with atomic_write(path) as fh:
        for line in lines:
            fh.write(line + "\n")
            n += 1
    return n


def write_jsonl(path: str | Path, examples: Iterable[SpanExample], chat: bool = False) -> int:
    """Atomically write examples as span JSONL (or chat JSONL when ``chat``)."""
    return write_lines(path, (dumps(to_chat(ex) if chat else ex.to_dict()) for ex in examples))
