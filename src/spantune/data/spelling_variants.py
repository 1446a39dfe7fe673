"""British and American spellings of one word: both are right, so neither may be "corrected" into the other.

The synthetic operators consult :func:`is_spelling_variant` so that no training pair teaches the model
to respell colour as color (or organize as organise); the adversarial spans use these words as text to
leave alone. Hand-written for this project.
"""

from __future__ import annotations

#: (British, American) pairs; regular inflections (s, ed, ing, er, ation, ful) are derived below.
PAIRS: tuple[tuple[str, str], ...] = (
    # -our / -or
    ("colour", "color"), ("flavour", "flavor"), ("favour", "favor"), ("favourite", "favorite"),
    ("honour", "honor"), ("humour", "humor"), ("labour", "labor"), ("neighbour", "neighbor"),
    ("behaviour", "behavior"), ("harbour", "harbor"), ("rumour", "rumor"), ("odour", "odor"),
    ("armour", "armor"), ("endeavour", "endeavor"), ("savoury", "savory"), ("neighbourhood", "neighborhood"),
    # -re / -er
    ("centre", "center"), ("theatre", "theater"), ("metre", "meter"), ("litre", "liter"), ("fibre", "fiber"),
    ("calibre", "caliber"), ("sombre", "somber"), ("kilometre", "kilometer"),
    # -ise / -ize, -yse / -yze
    ("organise", "organize"), ("realise", "realize"), ("recognise", "recognize"), ("apologise", "apologize"),
    ("criticise", "criticize"), ("emphasise", "emphasize"), ("memorise", "memorize"), ("prioritise", "prioritize"),
    ("specialise", "specialize"), ("summarise", "summarize"), ("analyse", "analyze"), ("paralyse", "paralyze"),
    # -ence / -ense, practise
    ("defence", "defense"), ("offence", "offense"), ("licence", "license"), ("pretence", "pretense"),
    ("practise", "practice"),
    # doubled l
    ("travelled", "traveled"), ("travelling", "traveling"), ("traveller", "traveler"), ("cancelled", "canceled"),
    ("cancelling", "canceling"), ("labelled", "labeled"), ("modelling", "modeling"), ("fuelled", "fueled"),
    ("counsellor", "counselor"), ("jewellery", "jewelry"), ("marvellous", "marvelous"), ("woollen", "woolen"),
    ("skilful", "skillful"), ("instalment", "installment"),
    # single words
    ("grey", "gray"), ("cheque", "check"), ("programme", "program"), ("catalogue", "catalog"),
    ("dialogue", "dialog"), ("analogue", "analog"), ("aeroplane", "airplane"), ("aluminium", "aluminum"),
    ("mould", "mold"), ("moustache", "mustache"), ("pyjamas", "pajamas"), ("plough", "plow"),
    ("sceptical", "skeptical"), ("ageing", "aging"), ("manoeuvre", "maneuver"), ("paediatric", "pediatric"),
    ("encyclopaedia", "encyclopedia"), ("judgement", "judgment"), ("acknowledgement", "acknowledgment"),
)

_SUFFIXES = ("s", "ed", "ing", "er", "ers", "ation", "ful")


def _forms(word: str) -> list[str]:
    """The word and its regular inflections, one per suffix, in the same order for both spellings."""
    stem = word[:-1] if word.endswith("e") else word
    return [word] + [(stem if suffix[0] in "aeiou" else word) + suffix for suffix in _SUFFIXES]


_OTHER: dict[str, str] = {}
for _gb, _us in PAIRS:
    for _a, _b in zip(_forms(_gb), _forms(_us)):
        _OTHER.setdefault(_a, _b)
        _OTHER.setdefault(_b, _a)


def other_spelling(word: str) -> str | None:
    """The other side's spelling of ``word`` in lower case (Colours → colors), or None when it has none."""
    return _OTHER.get(word.lower())


def is_spelling_variant(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are one word spelt the British and the American way (case ignored)."""
    return other_spelling(a) == b.lower()
