"""Typed corruption operators: each puts exactly one local, realistic error of its tag into clean text.

An operator looks at a tagged clean sentence (:class:`~spantune.data.align.Parsed`) and returns
``(start, end, replacement)`` character edits, or None when the sentence offers no place for its
error. The corrected side of the example is always the untouched clean sentence.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from spantune.data.align import Parsed, Token
from spantune.data.spelling_variants import is_spelling_variant
from spantune.data.tags import CONFUSABLE
from spantune.data.wordforms import IRREGULAR, gerund, match_case, past, plural, regular_past, third_person
from spantune.errors import SpantuneError

Change = tuple[int, int, str]

# QWERTY neighbours for fat-finger typos.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KEY_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_ROWS):
    for _c, _ch in enumerate(_row):
        near = [_row[j] for j in (_c - 1, _c + 1) if 0 <= j < len(_row)]
        for _rr in (_r - 1, _r + 1):
            if 0 <= _rr < len(_ROWS):
                near += [_ROWS[_rr][j] for j in (_c - 1, _c, _c + 1) if 0 <= j < len(_ROWS[_rr])]
        KEY_NEIGHBOURS[_ch] = "".join(sorted(set(near)))


_WORD = re.compile(r"^[A-Za-z]+$")
_PREP_SWAPS = {
    "in": ("on", "at", "into"), "on": ("in", "at"), "at": ("in", "on"), "for": ("to", "of"), "to": ("for", "at"),
    "of": ("for", "about"), "with": ("by", "of"), "from": ("of", "by"), "about": ("of", "on"), "by": ("with", "from"),
    "into": ("in", "to"), "during": ("in", "for"), "since": ("for", "from"), "until": ("to", "till"),
}
_COMPOUNDS = ("everyone", "everything", "something", "anything", "nothing", "sometimes", "cannot", "into",
              "without", "maybe", "himself", "herself", "itself", "however", "online", "today", "tonight",
              "another", "already", "anyway", "everyday", "somewhere", "outside", "inside", "become", "myself",
              "weekend", "homework", "classroom", "airport", "football", "birthday", "newspaper")
_BE_FORMS = {"is": "are", "are": "is", "was": "were", "were": "was", "am": "is", "has": "have", "have": "has",
             "does": "do", "do": "does"}
_SINGULAR_DETS = frozenset({"a", "an", "one", "each", "every", "this", "that", "another", "either", "neither"})
_DET_AGREE = {"this": "these", "these": "this", "that": "those", "those": "that", "much": "many", "many": "much"}


@lru_cache(maxsize=1)
def codespell_misspellings() -> dict[str, tuple[str, ...]]:
    """Correct word → common misspellings, reversed from codespell's dictionary (single-word fixes)."""
    try:
        import codespell_lib
    except ImportError:
        raise SpantuneError("operator misspelling needs codespell's dictionary: pip install 'spantune[data]' "
                            "(or set synthetic.operators.misspelling to 0)") from None
    path = Path(codespell_lib.__file__).parent / "data" / "dictionary.txt"
    return misspellings_from(path.read_text(encoding="utf-8").splitlines())


def misspellings_from(lines: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Reverse ``wrong->right`` lines into right → wrongs, leaving out British/American pairs (both right)."""
    table: dict[str, set[str]] = {}
    for line in lines:
        wrong, sep, right = line.partition("->")
        if not sep or "," in right or not (_WORD.match(wrong) and _WORD.match(right)):
            continue
        if wrong.lower() != wrong or right.lower() != right or len(right) < 3 or is_spelling_variant(wrong, right):
            continue
        table.setdefault(right, set()).add(wrong)
    return {k: tuple(sorted(v)) for k, v in table.items()}


@dataclass
class Context:
    """What operators share across sentences: known words (to keep typos non-words) and the typo list."""

    vocabulary: frozenset[str] = frozenset()
    misspellings: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def is_word(self, text: str) -> bool:
        return text.lower() in self.vocabulary


Operator = Callable[[Parsed, random.Random, Context], "Change | None"]


@dataclass(frozen=True)
class OperatorSpec:
    name: str
    tag: str
    fn: Operator


OPERATORS: dict[str, OperatorSpec] = {}


def operator(name: str, tag: str) -> Callable[[Operator], Operator]:
    def register(fn: Operator) -> Operator:
        OPERATORS[name] = OperatorSpec(name, tag, fn)
        return fn
    return register


def _pick(rng: random.Random, items: list) -> object | None:
    return rng.choice(items) if items else None


def _words(p: Parsed, min_len: int = 1) -> list[Token]:
    return [t for t in p.tokens if _WORD.match(t.text) and len(t.text) >= min_len]


def _replace(tok: Token, new: str) -> Change:
    return tok.start, tok.end, new


def _char_typo(p: Parsed, rng: random.Random, ctx: Context, edit: Callable[[str, random.Random], str | None],
               min_len: int = 4) -> Change | None:
    """Apply a character-level slip to a random word, keeping the first letter and avoiding real words.

    The other side's spelling of a word is a real word too (colour → color drops a letter), so it never counts.
    """
    candidates = [t for t in _words(p, min_len) if not t.text.isupper()]
    rng.shuffle(candidates)
    for tok in candidates[:5]:
        new = edit(tok.text, rng)
        if new and new != tok.text and not ctx.is_word(new) and not is_spelling_variant(new, tok.text):
            return _replace(tok, new)
    return None


def _keyboard(word: str, rng: random.Random) -> str | None:
    i = rng.randrange(1, len(word))
    ch = word[i].lower()
    if ch not in KEY_NEIGHBOURS:
        return None
    sub = rng.choice(KEY_NEIGHBOURS[ch])
    sub = sub.upper() if word[i].isupper() else sub
    if rng.random() < 0.5:
        return word[:i] + sub + word[i + 1:]
    return word[:i + 1] + sub + word[i + 1:]


def transpose_letters(word: str, rng: random.Random) -> str | None:
    i = rng.randrange(1, len(word) - 1)
    if word[i] == word[i + 1]:
        return None
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _delete(word: str, rng: random.Random) -> str | None:
    i = rng.randrange(1, len(word))
    return word[:i] + word[i + 1:]


def _double(word: str, rng: random.Random) -> str | None:
    doubled = [i for i in range(1, len(word)) if word[i] == word[i - 1]]
    if doubled and rng.random() < 0.6:  # learners drop a double letter more often than they add one
        i = rng.choice(doubled)
        return word[:i] + word[i + 1:]
    i = rng.randrange(1, len(word))
    return word[:i] + word[i] + word[i:]


@operator("typo_keyboard", "typo")
def typo_keyboard(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Hit a neighbouring key instead of, or next to, the right one (house → hoise, hpuse)."""
    return _char_typo(p, rng, ctx, _keyboard)


@operator("typo_transpose", "typo")
def typo_transpose(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Swap two adjacent letters (the → teh, from → form avoided as a real word)."""
    return _char_typo(p, rng, ctx, transpose_letters)


@operator("typo_delete", "typo")
def typo_delete(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Drop a letter (because → becuse)."""
    return _char_typo(p, rng, ctx, _delete, min_len=5)


@operator("typo_double", "typo")
def typo_double(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Drop or add a double letter (committee → comittee, until → untill)."""
    return _char_typo(p, rng, ctx, _double)


@operator("misspelling", "typo")
def misspelling(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """A misspelling people really make, from codespell's dictionary (receive → recieve)."""
    candidates = [t for t in _words(p, 5) if t.text.lower() in ctx.misspellings]
    tok = _pick(rng, candidates)
    if tok is None:
        return None
    return _replace(tok, match_case(tok.text, rng.choice(ctx.misspellings[tok.text.lower()])))


@operator("homophone", "homophone")
def homophone(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Real-word confusion (their/there/they're, its/it's, then/than, affect/effect, …)."""
    candidates = []
    for m in re.finditer(r"[A-Za-z]+(?:['’][A-Za-z]+)?", p.text):
        if m.group().lower().replace("’", "'") in CONFUSABLE:
            candidates.append(m)
    m = _pick(rng, candidates)
    if m is None:
        return None
    word = m.group()
    return m.start(), m.end(), match_case(word, rng.choice(CONFUSABLE[word.lower().replace("’", "'")]))


@operator("agreement", "agreement")
def agreement(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Break subject–verb or determiner–noun agreement (she goes → she go, these books → this books)."""
    options: list[Change] = []
    toks = p.tokens
    for i, t in enumerate(toks):
        low = t.text.lower()
        if not _WORD.match(t.text):
            continue
        if low in _BE_FORMS and t.tag in ("VBZ", "VBP", "VBD"):
            options.append(_replace(t, match_case(t.text, _BE_FORMS[low])))
        elif t.tag == "VBZ" and t.lemma and t.lemma.isalpha() and t.lemma.lower() != low:
            options.append(_replace(t, match_case(t.text, t.lemma.lower())))
        elif t.tag == "VBP" and t.lemma and t.lemma.isalpha() and i > 0 and toks[i - 1].tag in ("PRP", "NNS"):
            options.append(_replace(t, match_case(t.text, third_person(t.lemma.lower()))))
        elif low in _DET_AGREE and i + 1 < len(toks) and toks[i + 1].pos == "NOUN":
            options.append(_replace(t, match_case(t.text, _DET_AGREE[low])))
    return _pick(rng, options)


@operator("verb_form", "verb_form")
def verb_form(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Wrong verb form or tense: can goes, to went, had went, is go, goed, yesterday I go."""
    options: list[Change] = []
    toks = p.tokens
    for i, t in enumerate(toks):
        lemma = t.lemma.lower()
        if not (_WORD.match(t.text) and lemma.isalpha()) or lemma == "be":
            continue
        prev = toks[i - 1] if i else None
        low = t.text.lower()
        wrong: list[str] = []
        if t.tag == "VB" and prev is not None and (prev.tag == "MD" or prev.text.lower() == "to"):
            wrong = [third_person(lemma), past(lemma), gerund(lemma)]
        elif t.tag == "VBN" and prev is not None and prev.lemma == "have":
            wrong = [past(lemma), lemma]
        elif t.tag == "VBG" and prev is not None and prev.lemma == "be":
            wrong = [lemma, past(lemma)]
        elif t.tag == "VBD":
            wrong = [lemma] + ([regular_past(lemma)] if lemma in IRREGULAR else [])
        wrong = [w for w in wrong if w != low]
        if wrong:
            options.append(_replace(t, match_case(t.text, rng.choice(wrong))))
    return _pick(rng, options)


@operator("article", "article")
def article(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Missing, extra or wrong article (the store → store, a apple, a books)."""
    options: list[Change] = []
    toks = p.tokens
    for i, t in enumerate(toks):
        low = t.text.lower()
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if low in ("a", "an", "the") and t.text == low and nxt is not None and _WORD.match(nxt.text):
            options.append((t.start, nxt.start, ""))  # drop the article and its space
            if low in ("a", "an"):
                options.append(_replace(t, "an" if low == "a" else "a"))
        prev = toks[i - 1] if i else None
        if t.tag == "NNS" and t.text.islower() and prev is not None and prev.tag in ("IN", "VB", "VBP", "VBZ", "VBD"):
            options.append((t.start, t.start, "a "))
        if t.tag == "NNP" and prev is not None and prev.tag == "IN" and t.text[:1].isupper():
            options.append((t.start, t.start, "the "))
    return _pick(rng, options)


@operator("preposition", "preposition")
def preposition(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Wrong or missing preposition (interested in → interested on, listen to → listen)."""
    options: list[Change] = []
    toks = p.tokens
    for i, t in enumerate(toks):
        low = t.text.lower()
        if t.pos != "ADP" or low not in _PREP_SWAPS or t.text != low:
            continue
        options.append(_replace(t, rng.choice(_PREP_SWAPS[low])))
        if 0 < i < len(toks) - 1 and rng.random() < 0.3:
            options.append((toks[i - 1].end, t.end, ""))
    return _pick(rng, options)


@operator("punctuation", "punctuation")
def punctuation(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Missing comma or apostrophe, doubled mark, missing end mark, stray comma (dont, home.., I think, that)."""
    options: list[Change] = []
    toks = p.tokens
    last = len(toks) - 1
    for i, t in enumerate(toks):
        if t.text == "," and 0 < i < last:
            options.append((toks[i - 1].end, t.end, ""))
            options.append((t.start, t.end, ",,"))
        elif t.text in (".", "?", "!") and i == last and i > 0:
            options.append((toks[i - 1].end, t.end, ""))
            if t.text == ".":
                options.append((t.start, t.end, ".."))
            elif t.text == "?":
                options.append((t.start, t.end, "."))
        elif t.text[:1] in ("'", "’") and len(t.text) > 1 and t.start == toks[i - 1].end:
            options.append((t.start, t.start + 1, ""))  # John's → Johns, I'm → Im
        elif t.text.lower() in ("n't", "n’t"):
            options.append((t.start + 1, t.start + 2, ""))  # don't → dont
        elif (0 < i < last and _WORD.match(t.text) and _WORD.match(toks[i + 1].text)
              and toks[i + 1].start > t.end and t.pos in ("VERB", "NOUN", "PRON") and rng.random() < 0.2):
            options.append((t.end, t.end, ","))
    return _pick(rng, options)


@operator("capitalization", "capitalization")
def capitalization(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Lowercase a sentence start, a name or I; capitalise a common word (english, i think, The Weather)."""
    options: list[Change] = []
    for i, t in enumerate(p.tokens):
        if not _WORD.match(t.text):
            continue
        if t.text == "I":
            options.append(_replace(t, "i"))
        elif t.text[0].isupper() and not t.text.isupper() and (i == 0 or t.pos == "PROPN"):
            options.append(_replace(t, t.text.lower()))
        elif i > 0 and t.text.islower() and t.pos in ("NOUN", "VERB", "ADJ") and len(t.text) > 2:
            options.append(_replace(t, t.text.capitalize()))
    return _pick(rng, options)


@operator("spacing", "spacing")
def spacing(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Words run together or split, a missing space after a comma, a space before punctuation."""
    options: list[Change] = []
    toks = p.tokens
    for i, t in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if (nxt is not None and t.text.islower() and nxt.text.islower() and _WORD.match(t.text)
                and _WORD.match(nxt.text) and nxt.start == t.end + 1 and len(t.text) + len(nxt.text) <= 10):
            options.append((t.end, nxt.start, ""))
        low = t.text.lower()
        if low in _COMPOUNDS:
            cut = next((k for k in range(2, len(low) - 1) if ctx.is_word(low[:k]) and ctx.is_word(low[k:])), None)
            if cut:
                options.append((t.start + cut, t.start + cut, " "))
        if t.text in (",", ".", "?", "!", ";", ":") and i > 0 and toks[i - 1].end == t.start:
            options.append((t.start, t.start, " "))
            if t.text == "," and nxt is not None and nxt.start == t.end + 1:
                options.append((t.end, nxt.start, ""))
    return _pick(rng, options)


@operator("noun_number", "noun_number")
def noun_number(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """Singular for plural or the reverse (many book, one of my friend, a informations)."""
    options: list[Change] = []
    toks = p.tokens
    for i, t in enumerate(toks):
        if not (_WORD.match(t.text) and t.text.islower()):
            continue
        lemma = t.lemma.lower()
        if t.tag == "NNS" and lemma.isalpha() and lemma != t.text:
            options.append(_replace(t, lemma))
        elif t.tag == "NN" and len(t.text) > 2 and i > 0 and toks[i - 1].text.lower() in _SINGULAR_DETS:
            options.append(_replace(t, plural(t.text)))
    return _pick(rng, options)


@operator("extra_word", "extra_word")
def extra_word(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """A word typed twice (the the, to to)."""
    toks = [t for t in _words(p) if t.text.islower()]
    tok = _pick(rng, toks)
    return None if tok is None else (tok.end, tok.end, " " + tok.text)


@operator("missing_word", "missing_word")
def missing_word(p: Parsed, rng: random.Random, ctx: Context) -> Change | None:
    """A dropped copula or infinitive marker: she happy, I want go."""
    options: list[Change] = []
    toks = p.tokens
    for i, t in enumerate(toks):
        if 0 < i < len(toks) - 1 and t.text.islower() and (
                (t.lemma == "be" and t.tag in ("VBZ", "VBP", "VBD") and toks[i + 1].pos in ("ADJ", "VERB", "DET"))
                or (t.text == "to" and t.pos == "PART")):
            options.append((toks[i - 1].end, t.end, ""))
    return _pick(rng, options)


def apply(text: str, change: Change) -> str:
    start, end, new = change
    return text[:start] + new + text[end:]
