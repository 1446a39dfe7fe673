"""Readers and alignment of real corrections: M2, line-aligned files, TSV, JSONL; and bad input."""

from __future__ import annotations

import json
import random

import pytest

from spantune.data.align import DifflibAligner, compose
from spantune.data.sources import read_line_aligned, read_m2, read_parallel_jsonl, read_tsv, to_sentence
from spantune.data.spans import make_example
from spantune.data.text import detokenize
from spantune.errors import InputError

from data_samples import M2



def _write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_detokenize_joins_clitics_and_punctuation():
    s = detokenize('He said " I do n\'t know , really " ( twice ) .'.split())
    assert s.text == 'He said "I don\'t know, really" (twice).'
    assert [s.text[a:b] for a, b in s.offsets()] == list(s.tokens)


def test_m2_edits_become_examples_with_other_edits_applied(tmp_path):
    pairs = read_m2(_write(tmp_path, "a.m2", M2), name="toy")
    assert [p.group for p in pairs] == ["toy:1", "toy:7", "toy:10"]
    first = pairs[0]
    assert first.corrections[0].text == "This is an example of sentence that I wrote yesterday."
    tags = [e.tag for e in first.edits[0]]
    assert tags == ["agreement", "article", "punctuation", "verb_form"]
    assert pairs[1].edits[0][0].tag == "agreement" and pairs[1].corrections[0].text == "He does n't like coffee.".replace(" n't", "n't")
    assert pairs[2].corrections[0].text == pairs[2].orig.text and pairs[2].edits == [[]]

    edits = first.edits[0]
    text_out = compose(first.orig, first.corrections[0], edits, None).text
    text_in = compose(first.orig, first.corrections[0], edits, edits[3]).text
    assert text_in == "This is an example of sentence that I writed yesterday."
    cut = make_example(text_in, text_out, 1, random.Random(0))
    assert (cut.ctx_before, cut.span_in, cut.ctx_after, cut.span_out) == (
        "This is an example of sentence that I ", "writed", " yesterday.", "wrote")
    # The deleted comma: the span is widened to whole words on both sides.
    text_in = compose(first.orig, first.corrections[0], edits, edits[2]).text
    cut = make_example(text_in, text_out, 1, random.Random(0))
    assert (cut.span_in, cut.span_out) == ("sentence,", "sentence")


@pytest.mark.parametrize("bad, line, message", [
    ("A 1 2|||R:DET|||the|||REQUIRED|||-NONE-|||0\n", 1, "expected a sentence line"),
    ("S A b c .\nA 1 2|||R:DET|||the|||REQUIRED\n", 2, "expected 6"),
    ("S A b c .\nA x 2|||R:DET|||the|||REQUIRED|||-NONE-|||0\n", 2, "bad token offsets"),
    ("S A b c .\nA 3 9|||R:DET|||the|||REQUIRED|||-NONE-|||0\n", 2, "outside"),
    ("S A b c .\nA 1 3|||R:X|||x|||REQUIRED|||-NONE-|||0\nA 2 3|||R:Y|||y|||REQUIRED|||-NONE-|||0\n", 3, "overlaps"),
    ("S A b c .\nhello\n", 2, "expected an edit line"),
])
def test_malformed_m2_names_file_and_line(tmp_path, bad, line, message):
    path = _write(tmp_path, "bad.m2", bad)
    with pytest.raises(InputError) as err:
        read_m2(path, name="bad")
    assert str(err.value).startswith(f"{path}:{line}: M2: ") and message in str(err.value)


def test_line_aligned_files_and_their_errors(tmp_path):
    src = _write(tmp_path, "s.txt", "I has a cat .\nShe go home .\n")
    ref = _write(tmp_path, "r.txt", "I have a cat .\nShe goes home .\n")
    pairs = read_line_aligned(src, [ref], name="p", tokenized=True)
    assert [p.corrections[0].text for p in pairs] == ["I have a cat.", "She goes home."]

    short = _write(tmp_path, "short.txt", "I have a cat .\n")
    with pytest.raises(InputError, match=rf"^{short}:2: <lines>: 1 lines but .* has 2"):
        read_line_aligned(src, [short], name="p", tokenized=True)
    empty = _write(tmp_path, "empty.txt", "I have a cat .\n  \n")
    with pytest.raises(InputError, match=rf"^{empty}:2: <line>: empty line"):
        read_line_aligned(src, [empty], name="p", tokenized=True)
    latin1 = _write(tmp_path, "latin1.txt", "I have a cat .\nShe goes caf\xe9 .\n".encode("latin-1"))
    with pytest.raises(InputError, match=rf"^{latin1}:2: <line>: invalid UTF-8"):
        read_line_aligned(src, [latin1], name="p", tokenized=True)


def test_tsv_and_jsonl_parallel_input_align(tmp_path, errant_aligner):
    tsv = _write(tmp_path, "p.tsv", "He go to school yesterday.\tHe went to school yesterday.\n"
                                    "I dont like it.\tI don't like it.\tI do not like it.\n")
    pairs = read_tsv(tsv, name="tsv", tokenized=False)
    assert len(pairs[1].corrections) == 2
    edits = errant_aligner.align(pairs[0].orig, pairs[0].corrections[0])
    assert [(e.o_start, e.o_end, e.tag) for e in edits] == [(1, 2, "verb_form")]
    assert errant_aligner.align(pairs[1].orig, pairs[1].corrections[0])[0].tag == "punctuation"

    jsonl = _write(tmp_path, "p.jsonl", json.dumps({"source": "She have two cat.", "target": "She has two cats."}) + "\n")
    pair = read_parallel_jsonl(jsonl, name="j", tokenized=False)[0]
    tags = [e.tag for e in errant_aligner.align(pair.orig, pair.corrections[0])]
    assert tags == ["agreement", "noun_number"]

    for bad, line, field in [("only one column\n", 1, "<columns>"), ("a\t\n", 1, "<columns>")]:
        with pytest.raises(InputError, match=rf":{line}: {field}: "):
            read_tsv(_write(tmp_path, "bad.tsv", bad), name="b", tokenized=False)
    for bad, field in [("{not json\n", "<json>"), ('{"source": "x"}\n', "target"), ('{"source": "", "target": "y"}\n', "source")]:
        with pytest.raises(InputError, match=rf":1: {field}: "):
            read_parallel_jsonl(_write(tmp_path, "bad.jsonl", bad), name="b", tokenized=False)


def test_difflib_fallback_finds_the_same_edits():
    orig, corr = to_sentence("She walk to the school every days.", False), to_sentence("She walked to school every day.", False)
    edits = DifflibAligner().align(orig, corr)
    assert [(e.o_start, e.o_end, e.c_start, e.c_end) for e in edits] == [(1, 2, 1, 2), (3, 4, 3, 3), (6, 7, 5, 6)]
    assert [e.tag for e in edits] == ["verb_form", "article", "noun_number"]
    assert compose(orig, corr, edits, edits[1]).text == "She walked to the school every day."
