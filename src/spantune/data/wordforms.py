"""Word forms the error operators and the tagger share: verb and noun inflections, irregular verbs, case.

Kept apart from the operators (``synth``) and the tag rules (``tags``) because both need them: the tagger to
recognise a verb_form or noun_number edit, the operators to make one.
"""

from __future__ import annotations

_VOWELS = "aeiou"

#: Irregular verbs: base, past, past participle (verb_form typing in tags, verb errors in synth).
_IRREGULAR = """
arise arose arisen|awake awoke awoken|be was been|bear bore born|beat beat beaten|become became become|
begin began begun|bend bent bent|bet bet bet|bind bound bound|bite bit bitten|bleed bled bled|blow blew blown|
break broke broken|breed bred bred|bring brought brought|build built built|burn burnt burnt|buy bought bought|
catch caught caught|choose chose chosen|come came come|cost cost cost|cut cut cut|deal dealt dealt|dig dug dug|
do did done|draw drew drawn|dream dreamt dreamt|drink drank drunk|drive drove driven|eat ate eaten|fall fell fallen|
feed fed fed|feel felt felt|fight fought fought|find found found|fly flew flown|forbid forbade forbidden|
forget forgot forgotten|forgive forgave forgiven|freeze froze frozen|get got gotten|give gave given|go went gone|
grow grew grown|hang hung hung|have had had|hear heard heard|hide hid hidden|hit hit hit|hold held held|hurt hurt hurt|
keep kept kept|know knew known|lay laid laid|lead led led|leave left left|lend lent lent|let let let|lie lay lain|
lose lost lost|make made made|mean meant meant|meet met met|pay paid paid|put put put|quit quit quit|read read read|
ride rode ridden|ring rang rung|rise rose risen|run ran run|say said said|see saw seen|seek sought sought|
sell sold sold|send sent sent|set set set|shake shook shaken|shine shone shone|shoot shot shot|show showed shown|
shut shut shut|sing sang sung|sink sank sunk|sit sat sat|sleep slept slept|slide slid slid|speak spoke spoken|
spend spent spent|spread spread spread|stand stood stood|steal stole stolen|stick stuck stuck|sting stung stung|
strike struck struck|swear swore sworn|sweep swept swept|swim swam swum|swing swung swung|take took taken|
teach taught taught|tear tore torn|tell told told|think thought thought|throw threw thrown|understand understood understood|
wake woke woken|wear wore worn|win won won|write wrote written|
"""
IRREGULAR: dict[str, tuple[str, str]] = {}
for _entry in _IRREGULAR.replace("\n", "").split("|"):
    if _entry.strip():
        _base, _past, _pp = _entry.split()
        IRREGULAR[_base] = (_past, _pp)


def third_person(base: str) -> str:
    if base in ("be", "have", "do", "go"):
        return {"be": "is", "have": "has", "do": "does", "go": "goes"}[base]
    if base.endswith(("s", "x", "z", "ch", "sh", "o")):
        return base + "es"
    if base.endswith("y") and len(base) > 1 and base[-2] not in _VOWELS:
        return base[:-1] + "ies"
    return base + "s"


def _doubles_final(base: str) -> bool:
    return (len(base) <= 4 and len(base) >= 3 and base[-1] not in _VOWELS + "wxy"
            and base[-2] in _VOWELS and base[-3] not in _VOWELS)


def regular_past(base: str) -> str:
    if base.endswith("e"):
        return base + "d"
    if base.endswith("y") and len(base) > 1 and base[-2] not in _VOWELS:
        return base[:-1] + "ied"
    if _doubles_final(base):
        return base + base[-1] + "ed"
    return base + "ed"


def past(base: str) -> str:
    return IRREGULAR[base][0] if base in IRREGULAR else regular_past(base)


def gerund(base: str) -> str:
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")) and len(base) > 2:
        return base[:-1] + "ing"
    if _doubles_final(base):
        return base + base[-1] + "ing"
    return base + "ing"


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    return noun + "s"


def match_case(model: str, word: str) -> str:
    """Give ``word`` the capitalisation pattern of ``model`` (Their → There, THEIR → THERE)."""
    if model.isupper() and len(model) > 1:
        return word.upper()
    if model[:1].isupper():
        return word[:1].upper() + word[1:]
    return word
