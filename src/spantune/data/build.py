"""``spantune data build``: real corrections + typed synthetic errors → clean, stratified span datasets.

Order of work (every random choice comes from a string-seeded RNG, so a rerun is byte-identical):

1. read and validate every source (a bad line stops the build before anything is written);
2. align each real correction and cut one example per edit, the other edits applied in the contexts;
3. hold out whole sentences of real data, stratified by tag × span length × source → ``eval.jsonl``;
4. drop training sentences that are near copies of eval or golden windows (decontamination);
5. add synthetic errors, no-op spans and adversarial spans from the remaining clean text;
6. dedup (exact, conflicting targets, near duplicates), a last golden/eval collision check, write.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz

from spantune import __version__
from spantune.data.adversarial import adversarial_example
from spantune.data.align import Aligner, Edit, Parsed, compose, make_aligner
from spantune.data.bea import document_candidates
from spantune.data.candidate import Candidate
from spantune.data.config import DataConfig, repo_root, resolve, validate
from spantune.data.hygiene import contaminated, dedup, window
from spantune.data.reading import read_sources
from spantune.data.sources import Pair
from spantune.data.spans import Cut, make_example, sample_length
from spantune.data.split import group_of, seeded_order, stratified_split
from spantune.data.stats import compute_stats
from spantune.data.synth import OPERATORS, Context, apply, codespell_misspellings
from spantune.data.spelling_variants import other_spelling
from spantune.data.tags import ADVERSARIAL_TAG, NOOP_TAG
from spantune.data.text import Sentence
from spantune.errors import SpantuneError
from spantune.io import sha256_file, write_json
from spantune.schema import SpanExample, read_jsonl, write_jsonl


@dataclass
class BuildResult:
    train: list[SpanExample]
    eval: list[SpanExample]
    eval_synth: list[SpanExample]
    report: dict[str, Any]
    sources: list[dict[str, Any]]


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def real_candidates(pairs: list[Pair], aligner: Aligner, cfg: DataConfig, removed: Counter[str]) -> list[Candidate]:
    """One candidate per usable edit; the contexts carry the same correction's other edits."""
    from tqdm import tqdm

    aligner.prepare([s for pair in pairs if pair.document is None for s in (pair.orig, *pair.corrections)])
    out: list[Candidate] = []
    for pair in tqdm(pairs, desc="align real corrections", unit="sentence", disable=None, leave=False):
        if pair.document is not None:
            out += document_candidates(pair, cfg, removed)
            continue
        for ci, corr in enumerate(pair.corrections):
            if corr.tokens == pair.orig.tokens:
                continue
            if fuzz.ratio(pair.orig.text, corr.text) < cfg.real.min_similarity:
                removed["real_rewrite_skipped"] += 1
                continue
            edits: list[Edit] = pair.edits[ci] if pair.edits is not None else aligner.align(pair.orig, corr)
            text_out = compose(pair.orig, corr, edits, None).text
            for k, edit in enumerate(edits):
                if max(edit.o_end - edit.o_start, edit.c_end - edit.c_start) > cfg.spans.max_words:
                    removed["real_edit_too_long"] += 1
                    continue
                text_in = compose(pair.orig, corr, edits, edit).text
                if text_in == text_out:
                    removed["real_edit_invisible"] += 1
                    continue
                out.append(Candidate(text_in, text_out, [edit.tag], pair.group, pair.source, f"real:{pair.group}:{ci}:{k}",
                                     {"edit_type": edit.kind}))
    return out


def _join(c: Candidate, rng: random.Random, cfg: DataConfig, neighbours: list[str]) -> tuple[Candidate, int]:
    """Sometimes set the sentence between others, as in a real document, so contexts fill up.

    Returns the candidate and how far its original text moved right.
    """
    if c.in_document or not neighbours or rng.random() >= cfg.spans.join_neighbour:
        return c, 0
    other = rng.choice(neighbours)
    if rng.random() < 0.5:
        return dataclasses.replace(c, text_in=f"{other} {c.text_in}", text_out=f"{other} {c.text_out}"), len(other) + 1
    return dataclasses.replace(c, text_in=f"{c.text_in} {other}", text_out=f"{c.text_out} {other}"), 0


def cut(c: Candidate, cfg: DataConfig, neighbours: list[str] | None = None) -> SpanExample | None:
    """The span example for a candidate (joined with neighbour sentences when ``neighbours`` is given)."""
    rng = _rng(cfg.seed, c.key)
    anchor = c.anchor
    if neighbours is not None:
        c, shift = _join(c, rng, cfg, neighbours)
        anchor = None if anchor is None else anchor + shift
    got: Cut | None = make_example(c.text_in, c.text_out, sample_length(rng, cfg.spans.length_weights), rng,
                                   max_span_words=cfg.spans.max_words, max_context=cfg.spans.max_context, anchor=anchor)
    if got is None:
        return None
    return SpanExample(got.ctx_before, got.span_in, got.ctx_after, got.span_out, language=cfg.language,
                       tags=list(c.tags), source=c.source, extra={"group": c.group, **c.extra})


@dataclass
class PoolSentence:
    """Clean text that synthetic errors, no-op and adversarial spans are made from."""

    group: str
    parsed: Parsed


class Synthesizer:
    """Draws operators by their configured weights and applies them to pool sentences."""

    def __init__(self, cfg: DataConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.names = sorted(name for name, w in cfg.synthetic.operators.items() if w > 0)
        self.weights = [cfg.synthetic.operators[name] for name in self.names]

    def corrupt(self, parsed: Parsed, rng: random.Random, tries: int = 4) -> tuple[str, tuple[int, int, str]] | None:
        """A weighted-random operator's change to ``parsed`` (other operators tried if it finds no place)."""
        for _ in range(tries):
            name = rng.choices(self.names, self.weights)[0]
            change = OPERATORS[name].fn(parsed, rng, self.ctx)
            if change is not None and apply(parsed.text, change) != parsed.text:
                return name, change
        return None

    def errors(self, pool: list[PoolSentence], n: int, prefix: str) -> list[Candidate]:
        """``n`` single-error candidates, visiting the pool round-robin in a seeded order."""
        if not pool or not self.names:
            return []
        order = list(range(len(pool)))
        _rng(self.cfg.seed, prefix, "order").shuffle(order)
        out: list[Candidate] = []
        k = 0
        while len(out) < n and k < 4 * n:
            item = pool[order[k % len(order)]]
            key = f"{prefix}:{k}"
            k += 1
            got = self.corrupt(item.parsed, _rng(self.cfg.seed, key))
            if got is None:
                continue
            name, change = got
            out.append(Candidate(apply(item.parsed.text, change), item.parsed.text, [OPERATORS[name].tag], item.group,
                                 "synthetic", key, {"op": name}))
        return out

    def noops(self, pool: list[PoolSentence], n: int, prefix: str) -> list[Candidate]:
        """Correct spans; half sit where an operator would have put an error, to teach restraint."""
        out = []
        for k in range(n if pool else 0):
            key = f"{prefix}:noop:{k}"
            rng = _rng(self.cfg.seed, key)
            item = pool[rng.randrange(len(pool))]
            text = item.parsed.text
            got = self.corrupt(item.parsed, rng, tries=1) if rng.random() < 0.5 else None
            anchor = got[1][0] if got else rng.randrange(len(text))
            out.append(Candidate(text, text, [NOOP_TAG], item.group, NOOP_TAG, key, anchor=min(anchor, len(text) - 1)))
        return out


def _wordlist() -> frozenset[str]:
    """Lower-cased Hunspell en_GB word list shipped with ERRANT (empty when ERRANT is not installed)."""
    try:
        import errant
    except ImportError:
        return frozenset()
    path = Path(errant.__file__).parent / "en" / "resources" / "en_GB-large.txt"
    return frozenset(w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines())


def _spelled_right(parsed: Parsed, words: frozenset[str]) -> bool:
    """Clean text must be clean: JFLEG references sometimes keep a learner's misspelling."""
    return not words or all(t.text.lower() in words or other_spelling(t.text) in words
                            for t in parsed.tokens if t.text.isalpha())


def _cut_all(cands: list[Candidate], cfg: DataConfig, removed: Counter[str], reason: str,
             neighbours: list[str] | None = None) -> list[SpanExample]:
    out = []
    for c in cands:
        ex = cut(c, cfg, neighbours)
        if ex is None:
            removed[reason] += 1
        else:
            out.append(ex)
    return out


def cap_sources(examples: list[SpanExample], cfg: DataConfig, removed: Counter[str]) -> list[SpanExample]:
    """At most ``cap`` training examples per real source (a seeded choice), input order kept."""
    caps = {s.name: s.cap for s in cfg.real_sources if s.cap is not None}
    keep: set[int] = set(range(len(examples)))
    for name, cap in caps.items():
        mine = [i for i, ex in enumerate(examples) if ex.source == name]
        mine.sort(key=lambda i: seeded_order(cfg.seed, "cap", examples[i].extra.get("group"), window(examples[i], False)))
        keep -= set(mine[cap:])
        removed[f"capped:{name}"] = max(len(mine) - cap, 0)
    return [ex for i, ex in enumerate(examples) if i in keep]


def _in_synth_eval(cfg: DataConfig, group: str) -> bool:
    h = int(seeded_order(cfg.seed, "synthetic-eval", group)[:8], 16)
    return h < cfg.synthetic.eval_fraction * 0x100000000


def build(cfg: DataConfig, base: Path) -> BuildResult:
    """Everything in memory; nothing is written here (see :func:`write_outputs`)."""
    validate(cfg)
    removed: Counter[str] = Counter()
    golden = read_jsonl(resolve(cfg.golden, base)) if cfg.golden else []
    pairs, clean_lines, sources = read_sources(cfg, base, removed)
    if not pairs and not clean_lines:
        dropped = [s["name"] for s in sources if "commercial_only" in s.get("skipped", "")]
        raise SpantuneError("config: no real or clean source could be read; nothing to build from"
                            + (f" (commercial_only dropped {', '.join(dropped)})" if dropped else ""))
    aligner = make_aligner(cfg.aligner)

    # Real corrections → real eval (eval sources whole, auto sources' sentences held out stratified) and training.
    candidates = real_candidates(pairs, aligner, cfg, removed)
    eval_removed: Counter[str] = Counter()
    real_examples = _cut_all(candidates, cfg, Counter(), "")  # provisional: strata for the split
    split_of = {p.group: p.split for p in pairs}
    _, auto_eval = stratified_split([ex for ex in real_examples if split_of[group_of(ex)] == "auto"],
                                    cfg.real.eval_fraction, cfg.seed)
    eval_groups = {group_of(ex) for ex in auto_eval} | {p.group for p in pairs if p.split == "eval"}
    real_eval = dedup([ex for ex in real_examples if group_of(ex) in eval_groups], cfg.hygiene.near_duplicate,
                      eval_removed)

    def pool_of(sentences: list[tuple[str, Sentence]], prefix: str) -> list[PoolSentence]:
        """Distinct clean sentences, at most ``synthetic.pool_size`` of them (a seeded choice), parsed."""
        unique = list({s.text: (group, s) for group, s in sentences}.values())
        if len(unique) > cfg.synthetic.pool_size:
            unique.sort(key=lambda gs: seeded_order(cfg.seed, prefix, gs[1].text))
            unique = sorted(unique[:cfg.synthetic.pool_size], key=lambda gs: seeded_order(cfg.seed, "pool", gs[1].text))
        aligner.prepare([s for _, s in unique])
        return [PoolSentence(group, aligner.parse(s)) for group, s in unique]

    train_pairs = [p for p in pairs if p.group not in eval_groups]
    eval_pool = pool_of([(p.group, c) for p in pairs if p.group in eval_groups for c in p.corrections], "eval-pool")
    pool = pool_of([(p.group, c) for p in train_pairs for c in p.corrections]
                   + [(line.group, line.sentence) for line in clean_lines], "train-pool")
    words = _wordlist()
    spelled = [item for item in pool if _spelled_right(item.parsed, words)]
    removed["clean_sentence_misspelled"] = len(pool) - len(spelled)
    pool = spelled
    eval_pool = [item for item in eval_pool if _spelled_right(item.parsed, words)]
    vocabulary = words | {t.text.lower() for item in pool + eval_pool for t in item.parsed.tokens}
    misspellings = codespell_misspellings() if cfg.synthetic.operators.get("misspelling") else {}
    synth = Synthesizer(cfg, Context(vocabulary, misspellings))
    n_eval_noop = round(len(real_eval) * cfg.noop_fraction / (1 - cfg.noop_fraction))
    real_eval += _cut_all(synth.noops(eval_pool, n_eval_noop, "eval"), cfg, eval_removed, "noop_uncuttable")
    protected = [window(ex) for ex in real_eval] + [window(ex) for ex in golden]

    # Training-side text must not be a near copy of any eval or golden window (decontamination).
    texts = [item.parsed.text for item in pool] + [p.orig.text for p in train_pairs]
    groups = [item.group for item in pool] + [p.group for p in train_pairs]
    bad_groups = {g for g, hit in zip(groups, contaminated(texts, protected, cfg.hygiene.decontamination)) if hit}
    removed["contaminated_sentence_groups"] = len(bad_groups)
    pool = [item for item in pool if item.group not in bad_groups]
    real_train_cands = [c for c in candidates if c.group not in eval_groups]
    removed["real_contaminated"] = sum(c.group in bad_groups for c in real_train_cands)
    real_train_cands = [c for c in real_train_cands if c.group not in bad_groups]

    synth_pool = [item for item in pool if not _in_synth_eval(cfg, item.group)]
    synth_eval_pool = [item for item in pool if _in_synth_eval(cfg, item.group)]
    neighbours = sorted({item.parsed.text for item in synth_pool})

    train = cap_sources(_cut_all(real_train_cands, cfg, removed, "real_span_too_long", neighbours), cfg, removed)
    train += _cut_all(synth.errors(synth_pool, cfg.synthetic.examples, "syn"), cfg, removed, "synthetic_uncuttable", neighbours)
    total = round(len(train) / (1 - cfg.noop_fraction - cfg.adversarial_fraction))
    train += _cut_all(synth.noops(synth_pool, round(total * cfg.noop_fraction), "train"), cfg, removed,
                      "noop_uncuttable", neighbours)
    train += adversarial(cfg, synth_pool, round(total * cfg.adversarial_fraction), "train")

    n_synth_eval = round(cfg.synthetic.examples * cfg.synthetic.eval_fraction / (1 - cfg.synthetic.eval_fraction))
    eval_synth = _cut_all(synth.errors(synth_eval_pool, n_synth_eval, "syn-eval"), cfg, eval_removed,
                          "synthetic_uncuttable")
    n_synth_noop = round(len(eval_synth) * cfg.noop_fraction / (1 - cfg.noop_fraction))
    eval_synth += _cut_all(synth.noops(synth_eval_pool, n_synth_noop, "syn-eval"), cfg, eval_removed, "noop_uncuttable")

    train = dedup(train, cfg.hygiene.near_duplicate, removed)
    eval_synth = dedup(eval_synth, cfg.hygiene.near_duplicate, eval_removed)
    # Last guard: no training window may be a near copy of an eval or golden window.
    hits = contaminated([window(ex) for ex in train], protected, cfg.hygiene.decontamination)
    removed["collides_with_eval_or_golden"] = sum(hits)
    train = [ex for ex, hit in zip(train, hits) if not hit]
    _rng(cfg.seed, "shuffle").shuffle(train)
    for prefix, examples in (("train", train), ("eval", real_eval), ("eval-synth", eval_synth)):
        for i, ex in enumerate(examples):
            ex.id = f"{prefix}-{i:06d}"
    report = {
        "aligner": aligner.name,
        "removed_from_train": dict(sorted(removed.items())),
        "removed_from_eval": dict(sorted(eval_removed.items())),
        "real_sentences": len(pairs),
        "real_eval_sentences": len(eval_groups),
        "real_candidates": len(candidates),
        "clean_pool_sentences": len(pool),
        "golden_examples": len(golden),
    }
    return BuildResult(train, real_eval, eval_synth, report, sources)


def adversarial(cfg: DataConfig, pool: list[PoolSentence], n: int, prefix: str) -> list[SpanExample]:
    """Spans with instructions, code, URLs, emoji, names, other languages: kept as they are (or one typo fixed)."""
    parsed = [item.parsed for item in pool]
    out = []
    for k in range(n):
        got, typo = adversarial_example(_rng(cfg.seed, prefix, "adv", k), parsed, cfg.adversarial_typo_rate,
                                        cfg.spans.max_context)
        out.append(SpanExample(got.ctx_before, got.span_in, got.ctx_after, got.span_out, language=cfg.language,
                               tags=[ADVERSARIAL_TAG, "typo"] if typo else [ADVERSARIAL_TAG], source=ADVERSARIAL_TAG,
                               extra={"group": f"{prefix}-adversarial", "adversarial_kind": got.kind}))
    return out


OUTPUTS = (("train.jsonl", "train"), ("eval.jsonl", "eval"), ("eval_synth.jsonl", "eval_synth"))


def write_outputs(result: BuildResult, out_dir: Path, cfg: DataConfig) -> list[Path]:
    """Each JSONL with a ``.manifest.json`` sidecar (sources, licenses, config, seed, counts, sha256) and a chart."""
    from spantune.data.stats import write_chart

    written = []
    for name, attr in OUTPUTS:
        examples: list[SpanExample] = getattr(result, attr)
        path = out_dir / name
        write_jsonl(path, examples)
        stats = compute_stats(examples)
        chart = path.with_suffix(".stats.png")
        write_chart(stats, examples, chart, name)
        write_manifest(path, stats, cfg, result.sources, {**result.report, "chart": chart.name})
        written += [path, chart]
    return written


def write_manifest(path: Path, stats: dict[str, Any], cfg: DataConfig | None, sources: list[dict[str, Any]],
                   report: dict[str, Any]) -> Path:
    """``FILE.manifest.json``: provenance and counts, with no timestamps so reruns stay byte-identical."""
    manifest = {
        "file": path.name,
        "sha256": sha256_file(path),
        "examples": stats["examples"],
        "spantune_version": __version__,
        "seed": cfg.seed if cfg is not None else None,
        "sources": sources,
        "stats": stats,
        "report": report,
        "config": dataclasses.asdict(cfg) if cfg is not None else None,
    }
    target = path.with_name(path.name + ".manifest.json")
    write_json(target, manifest)
    return target


def run_build(config_path: str | None, overrides: list[str], out_dir: str) -> tuple[BuildResult, list[Path]]:
    """Load the config, build, write: what ``spantune data build`` runs."""
    from spantune.config import load_config

    cfg = load_config(DataConfig, config_path, overrides)
    result = build(cfg, repo_root(config_path))
    return result, write_outputs(result, Path(out_dir), cfg)
