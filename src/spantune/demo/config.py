"""The demo's configuration (``configs/demo.yaml``): which model, data, recipe, evaluations, export and Node run."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_CONFIG = "configs/demo.yaml"


@dataclass
class DataPart:
    config: str = "configs/data/default.yaml"  #: the data builder's config
    overrides: list[str] = field(default_factory=list)  #: ``--section.key value`` tokens for it
    out: str = "runs/demo/data"  #: train.jsonl, eval.jsonl (real dev: FCE dev + held-out JFLEG), eval_synth.jsonl


@dataclass
class TrainPart:
    config: str = "configs/train/smollm2-135m_lora_cpu-demo.yaml"
    overrides: list[str] = field(default_factory=list)  #: ``--section.key value`` tokens for the recipe


@dataclass
class EvalPart:
    golden: str = "fixtures/span_eval.jsonl"
    real: bool = True  #: also evaluate on the data build's eval.jsonl (real dev: never trained on)
    real_sample: int | None = 400  #: seeded sample of that file (it has ~4,600 spans); null = all of it
    untuned_real: bool = False  #: also score the untuned model on the real sample (~3 s/span on 2 CPU cores)
    #: the untuned model runs to the token cap on most spans (~1.4 s each): its row uses the first N spans of
    #: each set, which shows what tuning buys at a quarter of the time; null = all of them
    untuned_limit: int | None = 10
    #: real-dev spans needing no fix (none of them in the reported sample) the tuned model's keep margin is
    #: calibrated on, so the shipped model leaves ``keep_target`` of correct spans alone; null = margin 0
    calibration_sample: int | None = 400
    keep_target: float = 0.95
    #: reach keep_target at this one-sided confidence (Wilson lower bound over the sample), so it holds on spans
    #: the calibration never saw (spantune.evaluate.margin.kept_lower_bound); 0 = the observed share
    keep_confidence: float = 0.95
    seed: int = 0
    limit: int | None = None  #: first N examples of each set only (quick runs)
    max_new_tokens: int = 32


@dataclass
class ExportPart:
    dtypes: list[str] = field(default_factory=lambda: ["fp32", "q4", "int8"])
    verify_limit: int | None = 40
    #: the small file the demo evaluates on the golden set (onnxruntime, Transformers.js in Node) and times in the
    #: page: the one Node and the page load by default (defaultDtype in js/src/corrector.js; q4 is WebGPU's)
    small: str = "int8"


@dataclass
class NodePart:
    enabled: bool = True
    limit: int | None = None  #: first N golden spans only; None = all (comparable with the other rows)


@dataclass
class PagePart:
    enabled: bool = True  #: skipped, saying so, where Chromium is not installed (`make browser`)
    spans: int = 10  #: golden spans timed in the page and in Node, after one untimed warm-up
    threads: int = 1  #: WASM threads in the page (and onnxruntime-node intra-op threads)


@dataclass
class DemoConfig:
    model: str = "embedded"
    run_dir: str = "runs/demo"
    data: DataPart = field(default_factory=DataPart)
    train: TrainPart = field(default_factory=TrainPart)
    eval: EvalPart = field(default_factory=EvalPart)
    export: ExportPart = field(default_factory=ExportPart)
    node: NodePart = field(default_factory=NodePart)
    page: PagePart = field(default_factory=PagePart)
