"""``spantune demo``: the whole pipeline on the embedded offline model, each step cached by its inputs.

Steps: embedded model → dataset → eval untuned → train (CPU recipe) → eval tuned → eval identity and
Harper → export q4 ONNX with parity (+ eval of the q4 file) → eval of the same file in Transformers.js (Node)
→ side-by-side table and ``REPORT.md``. Each model and baseline is evaluated on the golden set and on
real learner corrections held out of training (JFLEG), so the README can quote real-data numbers.

Every stage is called in-process through its library function, never as a subprocess; only the
Transformers.js row's backend (:mod:`spantune.infer.node_backend`) runs Node, because it is JavaScript.

``config`` (the demo's YAML), ``cache`` (steps keyed by the hash of their inputs), ``steps`` (what each step
runs, in order), ``report`` (tables and REPORT.md), ``server`` (``spantune serve-demo``: the browser demo)
and ``commands`` (the CLI).
"""
