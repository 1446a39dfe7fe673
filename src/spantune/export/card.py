"""The README.md model card of an export: where it came from, how faithful each dtype is, how to load it."""

from __future__ import annotations

from typing import Any

from spantune.infer.onnx_backend import DTYPE_SUFFIX
from spantune.prompt import SYSTEM_PROMPT
from spantune.train import base_model_text, licence_lines, sources_text


def _licence_lines(source: dict[str, Any]) -> list[str]:
    """The terms of use first: the base model's licence and what the training data allows."""
    data = (source.get("run") or {}).get("data") or {}
    paragraphs = [*licence_lines(data), f"Base model: {base_model_text(source['base_model'])}."]
    return ["## Licence", "", *[part for paragraph in paragraphs for part in (paragraph, "")]]


def _source_lines(source: dict[str, Any]) -> list[str]:
    lines = [f"- Base model: {base_model_text(source['base_model'])}"]
    if source.get("adapter"):
        lines.append(f"- LoRA adapter merged into the base: `{source['adapter']}`")
    run = source.get("run")
    if run:
        lines.append(f"- Training run: `{run['path']}` (git {run.get('git_commit') or 'unknown'})")
        for name, data in run["data"].items():
            role = " (the checkpoint was chosen on it)" if name == run.get("checkpoint_chosen_on") else ""
            lines += [f"- Training data `{name}`{role}: `{data.get('path')}` (sha256 `{data.get('sha256')}`)",
                      f"  - sources: {sources_text(data)}"]
    if source.get("quant_aware_block_size"):
        lines.append(f"- Trained quant-aware on the symmetric 4-bit grid (block {source['quant_aware_block_size']}): "
                     "the merged fp32 weights already are the 4-bit values, so model_q4.onnx holds the same model")
    if not source.get("adapter"):
        lines.append("- Not fine-tuned by spantune (exported as is).")
    return lines


def _quant_lines(quantization: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for dtype, q in quantization.items():
        if "activations" in q:  # int8: no blocks
            lines.append(f"- {dtype}: {q['method']}: weights {q['weights']}; activations {q['activations']}; "
                         f"embedding {q['embedding']}")
            continue
        pattern = q["eight_bit_nodes"]
        four = "4-bit MatMuls (int4 DequantizeLinear + MatMul: fused to MatMulNBits natively, fp32 in WASM)"
        eight = ("8-bit MatMuls" if pattern == "." else f"8-bit MatMuls matching `{pattern}`, the others {four}"
                 if pattern else four)
        lines.append(f"- {dtype}: {q['method']}: {eight}, block {q['block_size']}, "
                     f"{'symmetric' if q['symmetric'] else 'asymmetric'}, embedding {q['embedding']}")
    return lines


def _parity_lines(parity: dict[str, Any] | None) -> list[str]:
    if parity is None:
        return ["Parity was not checked (`--no-verify`)."]
    tol = parity["tolerance"]
    lines = [f"Greedy decoding of {parity['examples']} examples from `{parity['data']}` "
             f"(max {parity['max_new_tokens']} new tokens) with PyTorch and with onnxruntime. fp32 must equal "
             f"PyTorch token for token, with logits within {tol['atol']} + {tol['rtol']} × max |logit|, "
             "or the export is refused.", "",
             "| dtype | same tokens as PyTorch | same tokens as ONNX fp32 | max abs logit diff vs PyTorch | seconds |",
             "|---|---|---|---|---|"]
    for dtype, r in parity["dtypes"].items():
        lines.append(f"| {dtype} | {r['same_as_torch']}/{r['examples']} ({r['agreement_torch']:.1%}) | "
                     f"{r['same_as_fp32']}/{r['examples']} ({r['agreement_fp32']:.1%}) | "
                     f"{r['max_abs_logit_diff']:.3g} (logit scale {r['logit_scale']:.3g}) | {r['seconds']:.1f} |")
    quantized = {d: r for d, r in parity["dtypes"].items() if d != "fp32"}
    if quantized:
        best = max(quantized, key=lambda d: quantized[d]["agreement_fp32"])
        lines += ["", f"Closest to fp32 of the smaller files: **{best}** "
                  f"({quantized[best]['agreement_fp32']:.0%} of these answers identical); load that dtype where "
                  "the answers must match the tuned model, the smallest one where download size matters more."]
    return lines


def _keep_margin_lines(keep: dict[str, Any] | None) -> list[str]:
    """The calibrated keep margin every loader uses by default (docs/keep-margin.md in the spantune repository)."""
    if keep is None:
        return ["Keep margin: not calibrated, so 0 (off) by default; `spantune calibrate` on the training run and "
                "a new export set one."]
    reached = "to keep" if keep["reached"] else "(no margin up to it reached the target) to keep"
    confidence = keep.get("confidence", 0.0)
    bound = (f" at {100 * confidence:g} % confidence (lower bound {100 * keep['noop_kept_bound']:.1f} %)"
             if confidence > 0 else "")
    return [f"Keep margin: {keep['margin']:g} {keep['unit']}, calibrated on `{keep['data']['path']}` "
            f"(sha256 `{keep['data']['sha256']}`, {keep['n']} spans) {reached} ≥ {100 * keep['target']:g} % of "
            f"correct spans{bound}: it keeps {100 * keep['noop_kept']:.1f} % of the spans that need no fix unchanged "
            f"({100 * keep['at_zero']['noop_kept']:.1f} % at 0). An edit is made only when the model prefers it to "
            "the unchanged span by at least this many nats per reply token (the log-probability difference of the two "
            "replies over their mean length). `createSpanCorrector` (from config.json's "
            "`spantune.keep_margin`) and `spantune eval --system onnx:DIR` (from keep_margin.json) use it by default; "
            "`keepMargin: 0` / `--keep-margin 0` turn it off."]


def _run_card_lines(run_card: str | None) -> list[str]:
    """The training run's own card (data, recipe, metrics), its headings moved two levels down."""
    if not run_card:
        return []
    body = [f"##{line}" if line.startswith("#") else line for line in run_card.strip().splitlines()]
    return ["## Training run", "", "The card written by `spantune train` for this run:", "", *body, ""]


def model_card(manifest: dict[str, Any], run_card: str | None = None) -> str:
    """Markdown card built from the manifest (everything it states is measured or recorded there)."""
    sizes = manifest["onnx_bytes"]
    ratio = manifest["size_ratio_vs_fp32"]
    files = "\n".join(f"| `onnx/model{DTYPE_SUFFIX[d]}.onnx` | {d} | {sizes[d] / 1e6:.1f} MB | {ratio[d]:.0%} |"
                      for d in manifest["dtypes"])
    versions = ", ".join(f"{k} {v}" for k, v in manifest["packages"].items() if v)
    return "\n".join([
        "---",
        "library_name: transformers.js",
        "pipeline_tag: text-generation",
        "tags: [onnx, spantune, grammar-correction]",
        "---",
        "",
        "# spantune span corrector (ONNX)",
        "",
        "A small chat model that corrects only the selected span of text and returns just the corrected span. "
        f"System prompt: `{SYSTEM_PROMPT}`; the user turn holds the context before, the span and the context after "
        "(built by `spantune.prompt` / `js/src/prompt.js`). Greedy decoding, at most "
        f"{manifest['generation']['max_new_tokens']} new tokens, stopping at any of "
        f"{manifest['generation']['eos_token_id']}.",
        "",
        *_licence_lines(manifest["source"]),
        "## Source",
        "",
        *_source_lines(manifest["source"]),
        "",
        "## Files",
        "",
        "| file | dtype | size | vs fp32 |",
        "|---|---|---|---|",
        files,
        "",
        *_quant_lines(manifest["quantization"]),
        "",
        "`model.safetensors` holds the merged PyTorch weights. `manifest.json` lists the sha256 of every file.",
        "",
        "## Parity",
        "",
        *_parity_lines(manifest["parity"]),
        "",
        "## Keep margin",
        "",
        *_keep_margin_lines(manifest.get("keep_margin")),
        "",
        *_run_card_lines(run_card),
        "## Load it",
        "",
        "Transformers.js (Node or browser), offline from a local folder:",
        "",
        "```js",
        "import { createSpanCorrector } from 'spantune';  // js/ in the spantune repository",
        "// dtype left out: q4 on WebGPU; in Node and on WASM the fastest file that gave PyTorch's answer on every",
        "// parity span above (on WASM among files of at most 30 % of fp32's size), else the most faithful of them",
        "const corrector = await createSpanCorrector({ modelPath: '/path/to/this/folder' });",
        "const { text } = await corrector.correct({ ctx_before: 'She said', span_in: 'it are', ctx_after: ' fine.' });",
        "```",
        "",
        "or with Transformers.js directly: `env.allowRemoteModels = false; "
        "env.localModelPath = '/path/to/parent';` then "
        "`AutoModelForCausalLM.from_pretrained('this-folder-name', { dtype: 'int8' })` (or `'q4'`, `'fp32'`).",
        "",
        "Python: `spantune eval --system onnx:/path/to/this/folder --dtype int8 --data fixtures/span_eval.jsonl`, or "
        "`spantune.infer.onnx_backend.OnnxCorrector('/path/to/this/folder', dtype='int8')`.",
        "",
        f"Exported {manifest['created']} with {versions}.",
        "",
    ])
