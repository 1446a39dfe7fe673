"""The data builder's typed config (``configs/data/default.yaml``), checked before any work starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from spantune.errors import SpantuneError

REAL_FORMATS = ("lines", "tsv", "jsonl", "m2", "bea")
SPLITS = ("auto", "train", "eval")


@dataclass
class RealSource:
    """A corpus of human corrections."""

    name: str = ""
    format: str = "lines"  # lines: ``src`` + ``refs`` files in ``path``; bea: ``files`` in ``path``; else ``path`` is the file
    path: str = ""
    src: str = ""
    refs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  #: bea: the JSON files in ``path`` (one essay per line)
    tokenized: bool = False
    license: str = ""
    commercial: bool = False  #: does the licence allow commercial use? (``commercial_only`` drops the others)
    required: bool = True
    #: auto: whole sentences held out for eval by ``real.eval_fraction``; train / eval: all on one side
    split: str = "auto"
    cap: int | None = None  #: at most this many training examples from this source (a seeded choice)


@dataclass
class CleanSource:
    """Correct text, one sentence per line, for synthetic errors and no-op spans."""

    name: str = ""
    path: str = ""
    tokenized: bool = False
    license: str = ""
    commercial: bool = False
    required: bool = True


@dataclass
class SpanConfig:
    max_words: int = 6
    max_context: int = 60
    #: Share of spans by length in words (editor selections: mostly one or two words).
    length_weights: dict[int, float] = field(default_factory=lambda: {1: 0.34, 2: 0.24, 3: 0.15, 4: 0.11, 5: 0.08, 6: 0.08})
    #: Chance that a training example's text is joined with a neighbouring sentence (fuller contexts).
    join_neighbour: float = 0.5


@dataclass
class RealConfig:
    #: Skip corrections whose similarity to the original (rapidfuzz ratio) is below this: rewrites, not edits.
    min_similarity: float = 50.0
    eval_fraction: float = 0.15


@dataclass
class SyntheticConfig:
    examples: int = 20000
    eval_fraction: float = 0.03
    #: At most this many clean sentences are parsed (spaCy) for synthetic errors, no-op and adversarial spans.
    pool_size: int = 40000
    operators: dict[str, float] = field(default_factory=lambda: {
        "typo_keyboard": 0.06, "typo_transpose": 0.05, "typo_delete": 0.05, "typo_double": 0.04,
        "misspelling": 0.06, "homophone": 0.04, "agreement": 0.06, "verb_form": 0.09, "article": 0.11,
        "preposition": 0.08, "punctuation": 0.14, "capitalization": 0.05, "spacing": 0.03,
        "noun_number": 0.07, "missing_word": 0.05, "extra_word": 0.04})


@dataclass
class HygieneConfig:
    near_duplicate: float = 95.0
    decontamination: float = 90.0


@dataclass
class DataConfig:
    seed: int = 13
    language: str = "en"
    aligner: str = "errant"  # errant (falls back to difflib when not installed) or difflib
    golden: str = "fixtures/span_eval.jsonl"
    noop_fraction: float = 0.15
    adversarial_fraction: float = 0.03
    #: Build from sources whose licence allows commercial use only; the manifest lists what was dropped.
    commercial_only: bool = False
    adversarial_typo_rate: float = 0.3
    real_sources: list[RealSource] = field(default_factory=list)
    clean_sources: list[CleanSource] = field(default_factory=list)
    spans: SpanConfig = field(default_factory=SpanConfig)
    real: RealConfig = field(default_factory=RealConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    hygiene: HygieneConfig = field(default_factory=HygieneConfig)


def _fraction(value: float, key: str, upper: float = 1.0) -> None:
    if not 0.0 <= value < upper:
        raise SpantuneError(f"config key {key}: must be in [0, {upper}), got {value}")


def validate(cfg: DataConfig) -> None:
    """Semantic checks the type checker in :func:`spantune.config.load_config` cannot do."""
    from spantune.data.synth import OPERATORS

    for name, weight in cfg.synthetic.operators.items():
        if name not in OPERATORS:
            raise SpantuneError(f"config key synthetic.operators.{name}: unknown operator "
                                f"(known: {', '.join(sorted(OPERATORS))})")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise SpantuneError(f"config key synthetic.operators.{name}: weight must be a number ≥ 0, got {weight!r}")
    if cfg.synthetic.examples > 0 and not any(cfg.synthetic.operators.values()):
        raise SpantuneError("config key synthetic.operators: every weight is 0")
    for length, weight in cfg.spans.length_weights.items():
        if not isinstance(length, int) or not 1 <= length <= cfg.spans.max_words:
            raise SpantuneError(f"config key spans.length_weights.{length}: lengths are 1..spans.max_words "
                                f"({cfg.spans.max_words})")
        if not isinstance(weight, (int, float)) or weight < 0:
            raise SpantuneError(f"config key spans.length_weights.{length}: weight must be a number ≥ 0")
    _fraction(cfg.noop_fraction + cfg.adversarial_fraction, "noop_fraction + adversarial_fraction", 0.5)
    for key in ("noop_fraction", "adversarial_fraction", "adversarial_typo_rate"):
        _fraction(getattr(cfg, key), key, 1.0 + (key == "adversarial_typo_rate"))
    _fraction(cfg.real.eval_fraction, "real.eval_fraction")
    _fraction(cfg.synthetic.eval_fraction, "synthetic.eval_fraction")
    _fraction(cfg.spans.join_neighbour, "spans.join_neighbour", 1.01)
    if cfg.aligner not in ("errant", "difflib"):
        raise SpantuneError(f"config key aligner: expected errant or difflib, got {cfg.aligner!r}")
    names = [s.name for s in cfg.real_sources] + [s.name for s in cfg.clean_sources]
    for i, src in enumerate(cfg.real_sources):
        key = f"real_sources[{i}]"
        if not src.name or not src.path:
            raise SpantuneError(f"config key {key}: needs a name and a path")
        if src.format not in REAL_FORMATS:
            raise SpantuneError(f"config key {key}.format: expected one of {', '.join(REAL_FORMATS)}, got {src.format!r}")
        if src.format == "lines" and (not src.src or not src.refs):
            raise SpantuneError(f"config key {key}: format 'lines' needs src and refs")
        if src.format == "bea" and not src.files:
            raise SpantuneError(f"config key {key}: format 'bea' needs files (the JSON files in path)")
        if src.split not in SPLITS:
            raise SpantuneError(f"config key {key}.split: expected one of {', '.join(SPLITS)}, got {src.split!r}")
        if src.cap is not None and src.cap < 0:
            raise SpantuneError(f"config key {key}.cap: must be ≥ 0 or null, got {src.cap}")
    for i, src in enumerate(cfg.clean_sources):
        if not src.name or not src.path:
            raise SpantuneError(f"config key clean_sources[{i}]: needs a name and a path")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpantuneError(f"config: source name {dupes[0]!r} is used twice")


#: The measuring sets spantune is judged on (JFLEG test, FCE test, W&I+LOCNESS dev and test): never read.
_TEST_WORD = re.compile(r"(?:^|[^a-z0-9_])test(?:$|[^a-z0-9_])")
_WI_DEV = re.compile(r"(?:^|[^a-z0-9_])(?:wi|locness|a|b|c|n|abc|abcn)[^a-z0-9_]+dev(?:$|[^a-z0-9_])")


def measuring_set(path: Path) -> str | None:
    """Why ``path`` names a hidden measuring split (a test split, or W&I/LOCNESS dev), or None."""
    text = str(path).lower()
    if _TEST_WORD.search(text):
        return "names a test split"
    if _WI_DEV.search(text) or ("locness" in text and "dev" in text):
        return "names the W&I/LOCNESS dev split"
    return None


def resolve(path: str, base: Path) -> Path:
    """Config paths are relative to the repository root (``base``), so the config works from any cwd."""
    p = Path(path)
    return p if p.is_absolute() else base / p


def repo_root(config_path: str | Path | None) -> Path:
    """The nearest folder above the config file holding ``pyproject.toml`` (else the working directory)."""
    if config_path is not None:
        for parent in Path(config_path).resolve().parents:
            if (parent / "pyproject.toml").exists():
                return parent
    return Path.cwd()
