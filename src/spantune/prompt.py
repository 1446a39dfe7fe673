"""The prompt contract: the one place that turns a span example into model input.

Training, inference, evaluation and export all call these functions, and ``js/src/prompt.js``
mirrors them byte for byte (``fixtures/prompt_cases.jsonl`` proves it).

Rules (documented in docs/contract.md):

* Lengths are counted in Unicode code points (JS: ``Array.from(s).length``).
* Context clipping keeps at most ``max_context`` code points on each side and cuts at the word
  boundary nearest that limit (a position next to whitespace). Only when the kept window holds no
  boundary does it cut mid-word, and then never before a combining mark, variation selector, emoji
  modifier or after a zero-width joiner, so no grapheme is split.
* Fields are escaped inside the prompt so that no span or context can fake the prompt's structure:
  ``\\`` → ``\\\\``, ``«`` → ``\\«``, ``»`` → ``\\»``, newline → ``\\n``, carriage return → ``\\r``.
  The assistant reply (the corrected span) is never escaped.
* Only the chat template's own markers become special tokens (:func:`encode_prompt`): text the user
  wrote — contexts, span, answer — is always tokenized as plain text, so a span such as
  ``</s><|im_start|>system`` cannot open a turn.
* Caret without selection (``select_span(text, caret)``): the span is the word (maximal run of
  non-whitespace) that contains the caret or ends at it; if the caret sits in whitespace, the
  word before it (the one just typed) on the same line; failing that, the next word on the line.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol

from spantune.errors import SpantuneError

SYSTEM_PROMPT = "Correct ONLY the Span. Return just the corrected Span."
MAX_CONTEXT = 60

#: Whitespace as both Python and JS define it for this contract (explicit, not str.isspace()).
WHITESPACE = frozenset(" \t\n\r\f\v\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                       "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")
LINE_BREAKS = frozenset("\n\r\u2028\u2029")
_ESCAPES = {"\\": "\\\\", "«": "\\«", "»": "\\»", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "«": "«", "»": "»", "n": "\n", "r": "\r"}
_FIELD = r"((?:[^\\«»\n]|\\[\\«»nr])*)"
_STAND_IN_RE = re.compile("\ue000(\\d+)\ue001")
_USER_RE = re.compile(rf"Context before: «{_FIELD}»\nSpan: «{_FIELD}»\nContext after: «{_FIELD}»")


def is_space(ch: str) -> bool:
    return ch in WHITESPACE


def _joins_previous(ch: str) -> bool:
    """True for code points that belong to the grapheme before them."""
    cp = ord(ch)
    return (
        unicodedata.category(ch).startswith("M")
        or 0xFE00 <= cp <= 0xFE0F
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F
        or cp == 0x200D
    )


def _safe_cut(text: str, i: int) -> bool:
    """A cut before ``text[i]`` splits no grapheme (approximation shared with JS)."""
    if i <= 0 or i >= len(text):
        return True
    return not _joins_previous(text[i]) and text[i - 1] != "\u200d"


def _word_cut(text: str, i: int) -> bool:
    return i <= 0 or i >= len(text) or is_space(text[i]) or is_space(text[i - 1])


def clip_before(text: str, limit: int = MAX_CONTEXT) -> str:
    """Keep the end of ``text``: at most ``limit`` code points, starting at a word boundary."""
    if len(text) <= limit:
        return text
    lo = len(text) - limit
    cuts = range(lo, len(text))
    start = next((s for s in cuts if _word_cut(text, s)), None)
    if start is None:  # one long word: cut inside it, but not inside a grapheme
        start = next((s for s in cuts if _safe_cut(text, s)), len(text))
    return text[start:]


def clip_after(text: str, limit: int = MAX_CONTEXT) -> str:
    """Keep the start of ``text``: at most ``limit`` code points, ending at a word boundary."""
    if len(text) <= limit:
        return text
    cuts = range(limit, 0, -1)
    end = next((e for e in cuts if _word_cut(text, e)), None)
    if end is None:  # one long word: cut inside it, but not inside a grapheme
        end = next((e for e in cuts if _safe_cut(text, e)), 0)
    return text[:end]


def _caret_word(text: str, caret: int) -> tuple[int, int]:
    """The span an editor corrects when the caret sits at ``caret`` with nothing selected."""

    def word_at(i: int) -> tuple[int, int]:
        start = i
        while start > 0 and not is_space(text[start - 1]):
            start -= 1
        end = i
        while end < len(text) and not is_space(text[end]):
            end += 1
        return start, end

    if caret > 0 and not is_space(text[caret - 1]):
        return word_at(caret - 1)
    if caret < len(text) and not is_space(text[caret]):
        return word_at(caret)
    i = caret
    while i > 0 and is_space(text[i - 1]) and text[i - 1] not in LINE_BREAKS:
        i -= 1
    if i > 0 and not is_space(text[i - 1]):
        return word_at(i - 1)
    j = caret
    while j < len(text) and is_space(text[j]) and text[j] not in LINE_BREAKS:
        j += 1
    if j < len(text) and not is_space(text[j]):
        return word_at(j)
    raise SpantuneError(f"no word at or next to the caret (position {caret})")


def select_span(text: str, start: int, end: int | None = None,
                max_context: int = MAX_CONTEXT) -> tuple[str, str, str]:
    """Cut ``text`` into (ctx_before, span_in, ctx_after) the way the editor does.

    ``start``/``end`` are code-point offsets; ``end`` None or equal to ``start`` means a caret.
    """
    if end is None:
        end = start
    if not 0 <= start <= end <= len(text):
        raise SpantuneError(f"selection {start}..{end} is outside the text (length {len(text)})")
    if start == end:
        start, end = _caret_word(text, start)
    span = text[start:end]
    if any(ch in LINE_BREAKS for ch in span):
        raise SpantuneError("the selected span crosses a line break; select within one line")
    if all(is_space(ch) for ch in span):
        raise SpantuneError("the selected span is empty or only whitespace")
    return clip_before(text[:start], max_context), span, clip_after(text[end:], max_context)


def escape_field(text: str) -> str:
    """Escape the characters that delimit prompt fields (see the module docstring)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def unescape_field(text: str) -> str:
    return re.sub(r"\\([\\«»nr])", lambda m: _UNESCAPES[m.group(1)], text)


def user_message(ctx_before: str, span_in: str, ctx_after: str) -> str:
    """The user turn: the three escaped fields, one per line."""
    return (f"Context before: «{escape_field(ctx_before)}»\n"
            f"Span: «{escape_field(span_in)}»\n"
            f"Context after: «{escape_field(ctx_after)}»")


def parse_user_message(text: str) -> tuple[str, str, str]:
    """Inverse of :func:`user_message`; raises ValueError when ``text`` is not one."""
    m = _USER_RE.fullmatch(text)
    if m is None:
        raise ValueError("not a span prompt (expected 'Context before: «…»\\nSpan: «…»\\nContext after: «…»')")
    before, span, after = (unescape_field(g) for g in m.groups())
    return before, span, after


class SpanFields(Protocol):
    """What a prompt is built from: a :class:`spantune.schema.SpanExample` or anything with its four texts
    (the schema imports this module, so the contract names the fields rather than the class)."""

    ctx_before: str
    span_in: str
    ctx_after: str
    span_out: str


def build_messages(example: SpanFields, with_answer: bool = False) -> list[dict[str, str]]:
    """System + user turns (and the assistant's target span when ``with_answer``)."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(example.ctx_before, example.span_in, example.ctx_after)},
    ]
    if with_answer:
        messages.append({"role": "assistant", "content": example.span_out})
    return messages


def _chat_template(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise SpantuneError(f"tokenizer {name!r} has no chat template; use an instruct/chat model "
                            "or set tokenizer.chat_template")
    return template


def _apply_template(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    _chat_template(tokenizer)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def render(tokenizer: Any, example: SpanFields, add_generation_prompt: bool = True,
           with_answer: bool = False) -> str:
    """The exact model input string, through the tokenizer's own chat template."""
    return _apply_template(tokenizer, build_messages(example, with_answer=with_answer),
                           add_generation_prompt and not with_answer)


@dataclass(frozen=True)
class PromptIds:
    """Token ids of the generation prompt, and of the reply after it (empty unless asked for)."""

    prompt: list[int]
    reply: list[int]


def _stand_in(i: int) -> str:
    """Message ``i``'s content while the template renders: private-use code points, no marker text."""
    return f"\ue000{i}\ue001"


def _fill(text: str, contents: list[str]) -> str:
    """``text`` with each stand-in replaced by its message content."""
    return _STAND_IN_RE.sub(lambda m: contents[int(m.group(1))], text)


def _encode_template(tokenizer: Any, rendered: str, contents: list[str]) -> list[int]:
    """Ids of ``rendered`` (contents replaced by stand-ins): each special token in it is the template's
    marker; the text between markers, contents filled in, is encoded with special-token text as plain text.

    Splitting only where the tokenizer itself splits (at special tokens) keeps ordinary text's ids equal
    to ``tokenizer(text, add_special_tokens=False)``.
    """
    pieces = _markers(tokenizer).split(rendered)
    texts = tokenizer([_fill(p, contents) for p in pieces[::2]], add_special_tokens=False,
                      split_special_tokens=True)["input_ids"]  # one batched call: most of the cost is per call
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        ids += [tokenizer.convert_tokens_to_ids(piece)] if i % 2 else texts[i // 2]
    return ids


@functools.lru_cache(maxsize=8)
def _markers(tokenizer: Any) -> re.Pattern[str]:
    """A pattern that splits rendered text at the tokenizer's special tokens (longest first), kept."""
    specials = (t.content for t in tokenizer.added_tokens_decoder.values() if t.special)
    markers = sorted(specials, key=len, reverse=True)
    if not markers:
        raise SpantuneError("the tokenizer has no special tokens, so its chat template cannot mark turns")
    return re.compile("(" + "|".join(map(re.escape, markers)) + ")")


@functools.lru_cache(maxsize=8)
def _frames(tokenizer: Any, template: str) -> tuple[str, str]:
    """The template rendered with stand-ins: (generation prompt, prompt + reply). They are the same for
    every example, so a training set of 100k examples renders them once, not 100k times. A probe whose
    contents have edge spaces and marker text checks that the template copies contents verbatim."""
    probe = SimpleNamespace(ctx_before=" <|im_end|> ", span_in=" x ", ctx_after="\n", span_out=" y ")
    messages = build_messages(probe, with_answer=True)
    stand_ins = [dict(m, content=_stand_in(i)) for i, m in enumerate(messages)]
    prompt = _apply_template(tokenizer, stand_ins[:2], add_generation_prompt=True)
    full = _apply_template(tokenizer, stand_ins, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise SpantuneError("the chat template renders the answered conversation with a different prefix than "
                            "the generation prompt, so the reply cannot be aligned with inference")
    if _fill(full, [m["content"] for m in messages]) != render(tokenizer, probe, with_answer=True):
        raise SpantuneError("the chat template changes message contents (trims or rewrites them), so user text "
                            "cannot be kept apart from its markers")
    return prompt, full


def encode_prompt(tokenizer: Any, example: SpanFields, with_answer: bool = False) -> PromptIds:
    """The one prompt encoder (inference, training, keep margin, export parity; js/src/encode.js's
    ``encodePrompt``): the template is rendered with stand-ins for the message contents, so only its own
    markers become special tokens, and then each content is spliced in as plain text. ``with_answer`` adds
    the reply: ``span_out`` and what the template writes after it, encoded apart from the prompt as a
    model generates it after the prompt."""
    prompt, full = _frames(tokenizer, _chat_template(tokenizer))
    contents = [m["content"] for m in build_messages(example, with_answer=with_answer)]
    return PromptIds(prompt=_encode_template(tokenizer, prompt, contents),
                     reply=_encode_template(tokenizer, full[len(prompt):], contents) if with_answer else [])
