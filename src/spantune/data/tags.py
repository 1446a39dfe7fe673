"""Error tags: one vocabulary for real (ERRANT- or difflib-typed) and synthetic edits.

Stratified splits, stats and evaluation all group by these tags, so real corrections are mapped onto
the same names the synthetic operators emit.
"""

from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein

from spantune.data.wordforms import IRREGULAR

#: Tags a training example can carry (the first one is its primary tag).
ERROR_TAGS = (
    "typo", "homophone", "agreement", "verb_form", "article", "preposition", "punctuation",
    "capitalization", "spacing", "noun_number", "word_form", "word_choice", "word_order",
    "missing_word", "extra_word",
)
NOOP_TAG = "noop"
ADVERSARIAL_TAG = "adversarial"
TAGS = (*ERROR_TAGS, NOOP_TAG, ADVERSARIAL_TAG)

#: Real-word confusions learners make (homophones and near-homophones); each row is one set.
CONFUSION_SETS: tuple[tuple[str, ...], ...] = (
    ("their", "there", "they're"), ("its", "it's"), ("your", "you're"), ("then", "than"),
    ("affect", "effect"), ("to", "too"), ("lose", "loose"), ("accept", "except"), ("whose", "who's"),
    ("were", "where"), ("weather", "whether"), ("quiet", "quite"), ("advice", "advise"),
    ("breath", "breathe"), ("peace", "piece"), ("hear", "here"), ("know", "no"), ("buy", "by"),
    ("passed", "past"), ("principal", "principle"), ("weak", "week"), ("write", "right"),
    ("new", "knew"), ("whole", "hole"), ("threw", "through"), ("brake", "break"), ("sight", "site"),
    ("personal", "personnel"), ("desert", "dessert"), ("chose", "choose"), ("later", "latter"),
    ("of", "off"), ("fair", "fare"), ("complement", "compliment"), ("meet", "meat"), ("see", "sea"),
    ("wear", "where"), ("one", "won"), ("our", "are"), ("for", "four"), ("wait", "weight"),
    ("allowed", "aloud"), ("bored", "board"), ("led", "lead"), ("thought", "though"),
    ("form", "from"), ("live", "life"), ("lost", "lots"), ("sell", "sale"), ("cloth", "clothe"),
    ("role", "roll"), ("course", "coarse"), ("tail", "tale"), ("waist", "waste"), ("mail", "male"),
)
CONFUSABLE: dict[str, tuple[str, ...]] = {}
for _row in CONFUSION_SETS:
    for _w in _row:
        CONFUSABLE[_w] = tuple(sorted(set(CONFUSABLE.get(_w, ())) | {x for x in _row if x != _w}))


ARTICLES = frozenset({"a", "an", "the"})
PREPOSITIONS = frozenset({
    "in", "on", "at", "for", "to", "of", "with", "from", "by", "about", "into", "onto", "over", "under",
    "during", "since", "until", "between", "among", "through", "towards", "toward", "against", "without",
    "within", "upon", "across", "after", "before", "behind", "beside", "near", "around",
})
_PUNCT_RE = re.compile(r"^[^\w\s]*$")
_LETTERS = re.compile(r"[^\w]")

# ERRANT main categories (after the M:/R:/U: operation) that map one-to-one onto a tag.
_ERRANT_DIRECT = {
    "SPELL": "typo", "PUNCT": "punctuation", "PREP": "preposition", "DET": "article",
    "NOUN:NUM": "noun_number", "NOUN:INFL": "noun_number", "VERB:SVA": "agreement",
    "VERB:TENSE": "verb_form", "VERB:FORM": "verb_form", "VERB:INFL": "verb_form",
    "MORPH": "word_form", "ADJ:FORM": "word_form", "NOUN:POSS": "punctuation", "CONTR": "punctuation",
    "WO": "word_order", "ORTH": "spacing",
}


def is_punct(text: str) -> bool:
    return bool(text) and _PUNCT_RE.match(text) is not None


def surface_tag(o: str, c: str) -> str | None:
    """Tags decided by the characters alone: confusions, case, spaces, punctuation and apostrophes."""
    if _confusion(o, c):
        return "homophone"
    if not o.strip() or not c.strip():
        return None
    if o.lower() == c.lower():
        return "capitalization"
    if o.replace(" ", "") == c.replace(" ", ""):
        return "spacing"
    if _LETTERS.sub("", o).lower() == _LETTERS.sub("", c).lower():
        return "punctuation"
    return None


def errant_tag(errant_type: str, o: str, c: str) -> str:
    """Map an ERRANT type such as ``R:VERB:SVA`` (plus the edit's text) onto our tag vocabulary."""
    op, _, cat = errant_type.partition(":")
    surface = surface_tag(o, c)
    if surface:
        return surface
    if cat in _ERRANT_DIRECT:
        return _ERRANT_DIRECT[cat]
    if op == "M":
        return "missing_word"
    if op == "U":
        return "extra_word"
    return "word_choice"


def _confusion(o: str, c: str) -> bool:
    o, c = o.lower().strip(), c.lower().strip()
    return c in CONFUSABLE.get(o, ())


def heuristic_tag(o: str, c: str) -> str:
    """Tag an edit without ERRANT (difflib fallback): the same vocabulary, from surface cues."""
    o, c = o.strip(), c.strip()
    surface = surface_tag(o, c)
    if surface:
        return surface
    ol, cl = o.lower(), c.lower()
    o_words, c_words = set(ol.split()), set(cl.split())
    if all(is_punct(w) for w in (o_words ^ c_words)):
        return "punctuation"
    if (o_words | c_words) <= ARTICLES or (o_words ^ c_words) <= ARTICLES:
        return "article"
    if (o_words ^ c_words) <= PREPOSITIONS:
        return "preposition"
    if not o:
        return "missing_word"
    if not c:
        return "extra_word"
    if sorted(ol.split()) == sorted(cl.split()):
        return "word_order"
    if " " not in o and " " not in c:
        inflection = _inflection(ol, cl)
        if inflection:
            return inflection
        if Levenshtein.distance(ol, cl) <= 2 and len(cl) >= 3 and ol[:1] == cl[:1]:
            return "typo"
    return "word_choice"


def _inflection(a: str, b: str) -> str | None:
    """verb_form or noun_number when one word is an inflection of the other (walk/walked, day/days, go/went)."""
    for forms in IRREGULAR.items():
        family = {forms[0], *forms[1]}
        if a in family and b in family:
            return "verb_form"
    short, long = sorted((a, b), key=len)
    for stem in (short, short[:-1]):
        if len(stem) < 2 or not long.startswith(stem):
            continue
        suffix = long[len(stem):]
        if suffix in ("ed", "d", "ing", "ied", "ying", stem[-1:] + "ed", stem[-1:] + "ing"):
            return "verb_form"
        if suffix in ("s", "es", "ies"):
            return "noun_number"
    return None


def length_bucket(n_words: int) -> str:
    """Span-length bucket used for stratification and stats."""
    if n_words <= 2:
        return str(max(n_words, 1))
    if n_words <= 4:
        return "3-4"
    if n_words <= 6:
        return "5-6"
    return "7+"


LENGTH_BUCKETS = ("1", "2", "3-4", "5-6", "7+")
