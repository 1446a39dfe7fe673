"""An essay sentence in its place: the paragraph it sits in and that paragraph's character-offset edits.

BEA-2019 corpora (FCE, Write & Improve) give edits as character offsets into the essay; span contexts are cut
from the paragraph with every other edit applied, so readers (``bea``) and the sentence record
(``sources.Pair``) both need these types, and neither should import the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CharEdit:
    """``paragraph[start:end]`` was corrected to ``correction``."""

    start: int
    end: int
    correction: str
    tag: str
    kind: str  # the corpus's own code (CLC) or "" when it gives none


@dataclass(frozen=True)
class InDocument:
    """Where a BEA sentence sits: its paragraph, every usable edit of that paragraph, its own range."""

    paragraph: str
    edits: tuple[CharEdit, ...]
    start: int
    end: int

    def sentence_edits(self) -> list[CharEdit]:
        return [e for e in self.edits if self.start <= e.start < self.end or e.start == e.end == self.end]


def apply_edits(text: str, edits: list[CharEdit] | tuple[CharEdit, ...]) -> str:
    """``text`` with non-overlapping ``edits`` applied (offsets into ``text``)."""
    out, pos = [], 0
    for e in sorted(edits, key=lambda e: (e.start, e.end)):
        out += [text[pos:e.start], e.correction]
        pos = e.end
    out.append(text[pos:])
    return "".join(out)
