"""``spantune export``: training run or model → merged safetensors → ONNX (KV cache) → 4-bit, parity-checked.

The output folder is what Transformers.js loads with ``localModelPath`` and ``dtype: 'q4'``, and what
``spantune eval --system onnx:DIR`` runs::

    DIR/config.json  generation_config.json  tokenizer.json  tokenizer_config.json (with chat_template)
    DIR/model.safetensors            merged weights (no PEFT needed at inference)
    DIR/onnx/model.onnx              fp32 decoder with past key values
    DIR/onnx/model_q4.onnx           int4 DequantizeLinear + MatMul pairs, GatherBlockQuantized embedding (and
                                     other --dtypes, e.g. model_quantized.onnx = q8: 8-bit MatMulNBits, for
                                     ≥ 95 % agreement with fp32)
    DIR/README.md  manifest.json     model card; sha256 of every file, parity, sizes and the keep margin
    DIR/keep_margin.json             the calibrated keep margin, when the model has one (``spantune calibrate``;
                                     also in config.json's ``spantune.keep_margin`` for Transformers.js)

``build`` runs the steps; ``folder`` writes everything but the decoders, ``onnx`` the decoders and their quantized
twins, ``parity`` checks them against PyTorch, ``card`` writes README.md; ``commands`` is the CLI.
"""

from spantune.export.build import ExportOptions, export_model, parse_dtypes
from spantune.export.onnx import QuantOptions

__all__ = ["ExportOptions", "QuantOptions", "export_model", "parse_dtypes"]
