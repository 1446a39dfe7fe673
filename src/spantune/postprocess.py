"""Turn raw model output into the text the editor inserts, with flags evaluation reuses.

Definitions (the only ones; docs/metrics.md and js/src/postprocess.js follow them):

* **candidate**: the first line of the raw output that is not blank, with surrounding whitespace
  removed, then — repeatedly, while one applies — an echoed label (``Span:``, ``Corrected:``,
  ``Answer:``…) or a wrapping pair of quotes/«» removed, unless ``span_in`` itself starts with
  that label or is wrapped in that pair.
* **verbose**: non-whitespace content had to be removed to get the candidate (another non-blank
  line, a label, wrapping quotes). Whitespace alone never makes an output verbose.
* **overrun**: the candidate is longer than the cap, ``max(2 × len(span_in), len(span_in) + 20)``
  code points unless a cap is given.
* **fallback**: the edit is not trusted and ``span_in`` is returned unchanged: on overrun, or when
  the candidate is empty.
* The inserted text keeps ``span_in``'s own leading and trailing whitespace around the candidate,
  so whitespace the span did not have is never inserted and the caret stays where it was.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from spantune.prompt import LINE_BREAKS, WHITESPACE

LABEL_RE = re.compile(
    r"^(?:corrected span|corrected text|corrected|correction|fixed span|fixed|span|answer|output|result)"
    r"[ \t]*:[ \t]*",
    re.IGNORECASE,
)
QUOTE_PAIRS = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"), ("`", "`"), ("„", "“"))


@dataclass(frozen=True)
class PostResult:
    """What to insert, and why it may differ from the raw output."""

    text: str
    overrun: bool = False
    verbose: bool = False
    fallback: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def length_cap(span_in: str) -> int:
    """Longest candidate (in code points) accepted for ``span_in``."""
    return max(2 * len(span_in), len(span_in) + 20)


_WS_CHARS = "".join(sorted(WHITESPACE))


def _strip_ws(text: str) -> str:
    return text.strip(_WS_CHARS)


def _edges(span_in: str) -> tuple[str, str]:
    """``span_in``'s leading and trailing whitespace."""
    core = _strip_ws(span_in)
    if not core:
        return span_in, ""
    start = span_in.index(core)
    return span_in[:start], span_in[start + len(core):]


def _first_line(raw: str) -> tuple[str, bool]:
    """First non-blank line, and whether any other line had content."""
    lines = [_strip_ws(line) for line in _split_lines(raw)]
    content = [line for line in lines if line]
    if not content:
        return "", False
    return content[0], len(content) > 1


def _unwrap(candidate: str, span_core: str) -> tuple[str, bool]:
    """Remove echoed labels and wrapping quotes that the span itself does not have."""
    stripped = False
    while True:
        label = LABEL_RE.match(candidate)
        if label and not LABEL_RE.match(span_core):
            candidate, stripped = _strip_ws(candidate[label.end():]), True
            continue
        for left, right in QUOTE_PAIRS:
            wrapped = len(candidate) >= 2 and candidate.startswith(left) and candidate.endswith(right)
            span_wrapped = len(span_core) >= 2 and span_core.startswith(left) and span_core.endswith(right)
            if wrapped and not span_wrapped:
                candidate, stripped = _strip_ws(candidate[len(left):-len(right)]), True
                break
        else:
            return candidate, stripped


def settled(raw: str) -> bool:
    """True once more output cannot change :func:`postprocess`'s result for any span.

    That is when a second line with content has begun: the first line is final and ``verbose`` is
    certain. Decoders stop there, which saves most of the cost of chatty answers and changes nothing
    that is inserted or measured (only the stored raw text is shorter).
    """
    lines = [line for line in _split_lines(raw) if _strip_ws(line).replace("\ufffd", "")]
    return len(lines) >= 2


def _split_lines(raw: str) -> list[str]:
    return re.split("|".join(map(re.escape, LINE_BREAKS)), raw)


def postprocess(raw: str, span_in: str, cap: int | None = None) -> PostResult:
    """Clean ``raw`` model output into the span to insert (see the module docstring)."""
    first, extra_lines = _first_line(raw)
    lead, trail = _edges(span_in)
    candidate, unwrapped = _unwrap(first, _strip_ws(span_in))
    verbose = extra_lines or unwrapped
    limit = length_cap(span_in) if cap is None else cap
    if len(candidate) > limit:
        return PostResult(span_in, overrun=True, verbose=verbose, fallback=True)
    if not candidate:
        return PostResult(span_in, verbose=verbose, fallback=True)
    return PostResult(lead + candidate + trail, verbose=verbose)
