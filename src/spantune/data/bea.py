"""BEA-2019 JSON learner corpora (FCE v2.1, Write & Improve v2.1): essays with character-offset edits.

Each line holds one essay: ``{"text": …, "edits": [[annotator, [[start, end, correction, code?], …]]], …}``.
Edits are kept at the character level on the essay's own, untokenized text, so a span example's
contexts are exactly what the learner's editor would have shown. Per essay, one annotator is kept (the
first); detection-only edits (``correction`` null), American-spelling edits (CLC ``SA``: both spellings
are left as written), nested or overlapping edits and edits that cross a paragraph are skipped and
counted, never guessed at.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from rapidfuzz import fuzz

from spantune.data.candidate import Candidate
from spantune.data.document import CharEdit, InDocument, apply_edits
from spantune.data.sources import Pair, json_records, to_sentence
from spantune.data.tags import heuristic_tag, surface_tag
from spantune.errors import InputError

if TYPE_CHECKING:
    from spantune.data.config import DataConfig

#: End of a sentence inside a paragraph: . ! ? (plus closing quotes/brackets) and the spaces after them.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=\S)")

#: CLC error codes whose meaning fixes the tag (after :func:`surface_tag`, which wins for case, spacing,
#: punctuation-only and homophone edits). The rest map by their first letter (M/U/R/F/D/I…).
_CLC_DIRECT = {
    "S": "typo", "SX": "homophone", "W": "word_order",
    "TV": "verb_form", "FV": "verb_form", "IV": "verb_form", "DV": "word_form",
    "AGV": "agreement", "AGN": "agreement", "AGD": "agreement", "AGA": "agreement", "AGQ": "agreement",
    "FN": "noun_number", "IN": "noun_number", "CN": "noun_number", "CQ": "noun_number",
}
_CLC_CLASS = {"D": "article", "T": "preposition", "P": "punctuation"}  # second letter of M?/U?/R?
_CLC_FIRST = {"M": "missing_word", "U": "extra_word", "F": "word_form", "D": "word_form", "I": "word_form"}
#: American spelling "errors" (CLC SA): British and American spellings are both correct for spantune.
IGNORED_CODES = frozenset({"SA"})


def clc_tag(code: str | None, o: str, c: str) -> str:
    """Map a CLC code (FCE) onto spantune's tag vocabulary; no code (W&I) → surface cues alone."""
    surface = surface_tag(o, c)
    if surface:
        return surface
    if not code:
        return heuristic_tag(o, c)
    if code in _CLC_DIRECT:
        return _CLC_DIRECT[code]
    if len(code) == 2 and code[1] in _CLC_CLASS and code[0] in "MUR":
        return _CLC_CLASS[code[1]]
    if code[0] in "MU" and (not o.strip() or not c.strip()):
        return _CLC_FIRST[code[0]]
    if code[0] in _CLC_FIRST and code[0] not in "MU":
        return _CLC_FIRST[code[0]]
    return "word_choice"


def _field(obj: object, path: str | Path, lineno: int, name: str, kind: type | tuple[type, ...], what: str) -> object:
    if not isinstance(obj, kind) or isinstance(obj, bool):
        raise InputError(path, lineno, name, f"expected {what}, got {type(obj).__name__}")
    return obj


def _edits_of(record: dict, text: str, path: str | Path, lineno: int,
              counts: Counter[str]) -> tuple[list[tuple[int, int, str, str | None]], list[int]]:
    """The first annotator's corrections, validated, and where its detection-only edits start.

    Skipped kinds are counted in ``counts``.
    """
    annotators = _field(record.get("edits"), path, lineno, "edits", list, "a list of [annotator, edits]")
    if not annotators:
        return [], []
    first = annotators[0]
    if not isinstance(first, list) or len(first) != 2 or not isinstance(first[1], list):
        raise InputError(path, lineno, "edits[0]", "expected [annotator_id, [[start, end, correction, code?], …]]")
    counts["bea_annotators_dropped"] += len(annotators) - 1
    out, unresolved = [], []
    for k, edit in enumerate(first[1]):
        name = f"edits[0][1][{k}]"
        if not isinstance(edit, list) or len(edit) not in (3, 4):
            raise InputError(path, lineno, name, "expected [start, end, correction, code?]")
        start = _field(edit[0], path, lineno, f"{name}[0] (start)", int, "an integer offset")
        end = _field(edit[1], path, lineno, f"{name}[1] (end)", int, "an integer offset")
        if not 0 <= start <= end <= len(text):  # type: ignore[operator]
            raise InputError(path, lineno, f"{name} (offsets)",
                             f"offsets {start}..{end} outside the {len(text)}-character text")
        correction, code = edit[2], edit[3] if len(edit) == 4 else None
        if correction is not None:
            _field(correction, path, lineno, f"{name}[2] (correction)", str, "a string or null")
        if code is not None:
            _field(code, path, lineno, f"{name}[3] (code)", str, "a string or null")
        if correction is None:
            counts["bea_detection_only"] += 1
            unresolved.append(start)
        elif code in IGNORED_CODES:
            counts["bea_american_spelling_kept"] += 1
        elif "\n" in correction or "\r" in correction:  # a paragraph split: no span can hold it
            counts["bea_correction_has_line_break"] += 1
        else:
            out.append((start, end, correction, code))  # type: ignore[arg-type]
    return out, unresolved  # type: ignore[return-value]


def _without_nesting(edits: list[tuple[int, int, str, str | None]], counts: Counter[str]) -> list[tuple[int, int, str, str | None]]:
    """Outer edits win over edits nested in or overlapping them (the outer correction includes the inner)."""
    kept: list[tuple[int, int, str, str | None]] = []
    for e in sorted(edits, key=lambda e: (e[0], -e[1])):
        if kept and e[0] < kept[-1][1]:
            counts["bea_nested_or_overlapping"] += 1
            continue
        kept.append(e)
    return kept


def _deletions_take_a_space(text: str, edits: list[tuple[int, int, str, str | None]],
                            counts: Counter[str]) -> list[tuple[int, int, str, str | None]]:
    """A deleted word takes one of the spaces around it along (BEA offsets cover the word only), so corrected
    text reads as a person would write it: "more different things" -> "more things", not "more  things";
    "act consequently." -> "act.", not "act .". Left as annotated where a neighbouring edit touches that space.
    """
    out = list(edits)
    for k, (s, e, c, code) in enumerate(out):
        if c or s == e or (s > 0 and text[s - 1] not in " \n"):
            continue
        before_free = k == 0 or out[k - 1][1] < s - 1
        after_free = k + 1 == len(out) or out[k + 1][0] > e
        if e < len(text) and text[e] == " " and after_free:
            out[k] = (s, e + 1, c, code)
        elif s > 0 and text[s - 1] == " " and before_free and (e == len(text) or text[e] in "\n,.;:!?"):
            out[k] = (s - 1, e, c, code)
        else:
            continue
        counts["bea_deletion_took_its_space"] += 1
    return out


def _sentence_ranges(paragraph: str, edits: list[CharEdit]) -> list[tuple[int, int]]:
    """Sentence ranges of a paragraph; a boundary inside an edit joins the two sentences."""
    cuts = [m.end() for m in _SENTENCE_END.finditer(paragraph)]
    cuts = [b for b in cuts if not any(e.start < b < e.end for e in edits)]
    bounds = [0, *cuts, len(paragraph)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if paragraph[a:b].strip()]


def _essay_pairs(record: dict, path: str | Path, lineno: int, name: str, counts: Counter[str]) -> list[Pair]:
    text = _field(record.get("text"), path, lineno, "text", str, "the essay as a string")
    essay = str(record.get("id", lineno))
    found, unresolved = _edits_of(record, text, path, lineno, counts)  # type: ignore[arg-type]
    edits = _deletions_take_a_space(text, _without_nesting(found, counts), counts)  # type: ignore[arg-type]
    pairs: list[Pair] = []
    offset = 0
    for p_index, paragraph in enumerate(text.split("\n")):  # type: ignore[union-attr]
        p_start, p_end = offset, offset + len(paragraph)
        offset = p_end + 1
        inside = [e for e in edits if p_start <= e[0] and e[1] <= p_end and (e[0] < p_end or e[0] == e[1])]
        counts["bea_edit_crosses_paragraph"] += sum(p_start <= e[0] < p_end and e[1] > p_end for e in edits)
        if not paragraph.strip():
            continue
        local = tuple(CharEdit(s - p_start, e - p_start, c, clc_tag(code, text[s:e], c), code or "")
                      for s, e, c, code in inside)
        for s_index, (a, b) in enumerate(_sentence_ranges(paragraph, list(local))):
            doc = InDocument(paragraph, local, a, b)
            orig = paragraph[a:b].strip()
            corrected = apply_edits(paragraph[a:b], [CharEdit(e.start - a, e.end - a, e.correction, e.tag, e.kind)
                                                     for e in doc.sentence_edits()]).strip()
            group = f"{name}:{essay}:{p_index}:{s_index}"
            # A sentence with an error the annotator did not correct is no clean text (no-op or synthetic).
            clean = corrected and not any(p_start + a <= u < p_start + b for u in unresolved)
            corrections = [to_sentence(corrected, False)] if clean else []
            pairs.append(Pair(to_sentence(orig, False), corrections, group, name, document=doc))
    return pairs


def read_bea(paths: list[Path], *, name: str, counts: Counter[str]) -> list[Pair]:
    """Every sentence of every essay in ``paths`` (one :class:`Pair` each, with its :class:`InDocument`)."""
    return [pair for path in paths for lineno, record in json_records(path)
            for pair in _essay_pairs(record, path, lineno, name, counts)]


def _words(text: str) -> int:
    return len(text.split())


def edit_clusters(paragraph: str, edits: list[CharEdit], max_words: int) -> list[list[CharEdit]]:
    """Edits separated by nothing but spaces become one span when the pair fits ``max_words`` words."""
    groups: list[list[CharEdit]] = []
    for e in sorted(edits, key=lambda e: (e.start, e.end)):
        if groups and not paragraph[groups[-1][-1].end:e.start].strip():
            groups[-1].append(e)
        else:
            groups.append([e])
    out = []
    for group in groups:
        o = paragraph[group[0].start:group[-1].end]
        c = apply_edits(o, [dataclasses.replace(e, start=e.start - group[0].start, end=e.end - group[0].start)
                            for e in group])
        fits = max(_words(o), _words(c)) <= max_words
        out += [group] if fits or len(group) == 1 else [[e] for e in group]
    return out


def document_candidates(pair: Pair, cfg: DataConfig, removed: Counter[str]) -> list[Candidate]:
    """A BEA sentence's edits (or clusters of touching edits), each in its paragraph with every other edit applied."""
    doc = pair.document
    assert doc is not None
    mine = doc.sentence_edits()
    if not mine:
        return []
    if pair.corrections and fuzz.ratio(pair.orig.text, pair.corrections[0].text) < cfg.real.min_similarity:
        removed["real_rewrite_skipped"] += 1
        return []
    text_out = apply_edits(doc.paragraph, doc.edits)
    out = []
    for k, cluster in enumerate(edit_clusters(doc.paragraph, mine, cfg.spans.max_words)):
        o = doc.paragraph[cluster[0].start:cluster[-1].end]
        if len(cluster) == 1 and max(_words(o), _words(cluster[0].correction)) > cfg.spans.max_words:
            removed["real_edit_too_long"] += 1
            continue
        text_in = apply_edits(doc.paragraph, [e for e in doc.edits if e not in cluster])
        if text_in == text_out:
            removed["real_edit_invisible"] += 1
            continue
        tags = list(dict.fromkeys(e.tag for e in cluster))
        out.append(Candidate(text_in, text_out, tags, pair.group, pair.source, f"real:{pair.group}:{k}",
                             {"edit_type": "+".join(e.kind for e in cluster)}, in_document=True))
    return out
