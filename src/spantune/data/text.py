"""Sentences as tokens with spacing, so token-level edits map back to real, detokenized text.

Corpora such as JFLEG and M2 files are tokenized (``do n't``, ``city ,``); editors see ``don't`` and
``city,``. A :class:`Sentence` keeps each token's "space before" flag, which lets us splice tokens from
an original and a corrected sentence and still print natural text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ATTACH_LEFT = frozenset({",", ".", "!", "?", ";", ":", "%", ")", "]", "}", "...", "''", "'", "”", "’", "…"})
_ATTACH_RIGHT = frozenset({"(", "[", "{", "$", "``", "“", "‘", "#"})
_CLITICS = frozenset({"n't", "'s", "'re", "'ve", "'m", "'ll", "'d", "’s", "n’t", "’re", "’ve", "’m", "’ll", "’d"})
_PTB_QUOTES = {"``": "\u201c", "''": "\u201d", "-LRB-": "(", "-RRB-": ")"}
_MULTISPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Sentence:
    """Tokens plus whether a space precedes each one (the first flag is ignored)."""

    tokens: tuple[str, ...]
    space_before: tuple[bool, ...]

    @property
    def text(self) -> str:
        return "".join((" " if sp and i else "") + tok for i, (tok, sp) in enumerate(zip(self.tokens, self.space_before)))

    def offsets(self) -> list[tuple[int, int]]:
        """Character (start, end) of every token in :attr:`text`."""
        out, pos = [], 0
        for i, (tok, sp) in enumerate(zip(self.tokens, self.space_before)):
            pos += 1 if sp and i else 0
            out.append((pos, pos + len(tok)))
            pos += len(tok)
        return out


def detokenize(tokens: list[str] | tuple[str, ...]) -> Sentence:
    """Rule-based spacing for Penn-style tokens: punctuation and clitics attach left, quotes pair up."""
    toks = tuple(_PTB_QUOTES.get(t, t) for t in tokens)
    flags: list[bool] = []
    open_quote = False
    prev = ""
    for tok in toks:
        space = True
        if tok == '"':
            space = not open_quote  # an opening quote takes a space before it, a closing one doesn't
            open_quote = not open_quote
        elif tok in _ATTACH_LEFT or tok.lower() in _CLITICS:
            space = False
        if prev in _ATTACH_RIGHT or (prev == '"' and open_quote):
            space = False
        flags.append(space)
        prev = tok
    return Sentence(toks, tuple(flags))


def from_tokens_with_space(tokens: list[str], whitespace_after: list[bool]) -> Sentence:
    """Sentence from a tokenizer that recorded real whitespace (e.g. spaCy's ``whitespace_``)."""
    return Sentence(tuple(tokens), (False, *whitespace_after[:-1]))


def normalize_space(text: str) -> str:
    return _MULTISPACE.sub(" ", text).strip()


def word_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of every whitespace-delimited word: the unit an editor selects."""
    return [m.span() for m in re.finditer(r"\S+", text)]
