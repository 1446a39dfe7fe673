"""ONNX side of ``spantune export``: one merged decoder with past key values, and its quantized twins.

Why this chain (checked with transformers 4.57.6, optimum-onnx 0.1.0, onnxruntime 1.32, Transformers.js 4.3.1):

* optimum-onnx's ``text-generation-with-past`` export gives the single merged decoder Transformers.js runs
  (inputs ``input_ids``, ``attention_mask``, ``position_ids``, ``past_key_values.N.*``; opset 18).
* ``no_post_process=True``: optimum's post-processing dedups a tied ``lm_head`` into ``Transpose(embed)``,
  which the 4-bit quantizer cannot touch. Without it lm_head stays its own MatMul weight and is quantized.
* 4-bit: onnxruntime's ``MatMulNBitsQuantizer`` in QDQ form — each weight stored as int4 blocks behind a
  ``DequantizeLinear`` feeding the plain ``MatMul`` (opset 21) — plus the embedding ``Gather`` turned into
  ``GatherBlockQuantized`` so q4 reaches ≤ 30 % of fp32 on small models whose embedding dominates. QDQ lets each
  runtime pick its math when the session loads (:data:`spantune.infer.onnx_backend.ACCURACY_LEVEL_KEY`;
  ``withQuantConfig`` in js/src/corrector.js): native onnxruntime fuses the pairs into ``MatMulNBits`` at the
  recorded accuracy level, while onnxruntime-web's WASM build, whose ``MatMulNBits`` runs 6-8× slower per pass
  than its fp32 ``MatMul``, folds them into fp32 weights: a 4-bit download at fp32 speed in the page, with the same
  answers (benchmarks/RESULTS.md).
* ``num_logits_to_keep`` (an int64 scalar input, 0 = every position, as in transformers): the graph slices the
  hidden states to the last N positions before ``lm_head``. A prompt pass needs one row of logits, a copy-draft
  pass one per guess plus one, yet ``lm_head`` (49,152 × 576 on SmolLM2-135M) is ~21 % of the per-position
  compute; Transformers.js feeds the input when a session has it (0 unless told), and both spantune decoders ask
  for the rows they read (:func:`add_logits_to_keep`).
* q8: ``MatMulNBits`` with 8-bit weights (QDQ holds only 4 bits; embedding still 4-bit). On SmolLM2-135M, 4-bit
  MatMuls move greedy output on ~1 span in 4-5 while 8-bit keeps ~96 % (benchmarks/q4_fidelity.py), at ~26 % of
  fp32.
"""

from __future__ import annotations

import logging
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spantune.errors import SpantuneError
from spantune.infer.onnx_backend import DTYPE_SUFFIX, LOGITS_TO_KEEP, onnx_file

TASK = "text-generation-with-past"
#: protobuf cannot hold a model over 2 GiB; bigger ones keep weights in ``model.onnx_data``.
_PROTOBUF_LIMIT = 2_000_000_000


@dataclass(frozen=True)
class QuantOptions:
    """Block-quantization settings: block size, symmetry, whether the embedding is quantized, and which
    MatMuls (a regex on ONNX node names, e.g. ``self_attn``) keep 8-bit weights instead."""

    block_size: int = 32
    symmetric: bool = True
    quantize_embedding: bool = True
    #: 1 = fp32 compute inside MatMulNBits. Level 4 (int8 activations) is what native onnxruntime runs fast,
    #: but onnxruntime-web's WASM computes in fp32 regardless, so the browser's greedy output then differs
    #: from the Python parity check's (benchmarks/RESULTS.md, in-browser latency); level 1 keeps them equal.
    #: An attribute of the 8-bit nodes; the 4-bit QDQ pairs get it at load time (manifest → session config).
    accuracy_level: int = 1
    eight_bit: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"method": "onnxruntime MatMulNBitsQuantizer (RTN)", "bits": 4, "block_size": self.block_size,
                "four_bit_format": None if self.eight_bit == "." else "int4 DequantizeLinear + MatMul (QDQ)",
                "symmetric": self.symmetric, "embedding": "GatherBlockQuantized" if self.quantize_embedding else "fp32",
                "accuracy_level": self.accuracy_level, "eight_bit_nodes": self.eight_bit or None}


def export_decoder(merged_dir: Path, model_dir: Path, opset: int | None = None) -> Path:
    """Export ``merged_dir`` (a saved transformers model) to ``model_dir/onnx/model.onnx``."""
    from optimum.exporters.onnx import main_export
    from transformers.utils import logging as hf_logging

    work = model_dir / ".onnx-export"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # optimum passes the deprecated torch_dtype= and transformers says so
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python bools: expected for this export
            main_export(str(merged_dir), work, task=TASK, opset=opset, device="cpu", no_post_process=True,
                        do_validation=False, local_files_only=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    target = onnx_file(model_dir, "fp32")
    target.parent.mkdir(parents=True, exist_ok=True)
    for produced in work.glob("model.onnx*"):  # model.onnx and, over 2 GiB, model.onnx_data
        shutil.move(str(produced), target.parent / produced.name)
    shutil.rmtree(work)
    if not target.is_file():
        raise SpantuneError(f"the ONNX exporter wrote no model.onnx for {merged_dir}")
    add_logits_to_keep(target)
    return target


def add_logits_to_keep(path: Path) -> None:
    """Give the decoder at ``path`` a :data:`LOGITS_TO_KEEP` input: ``Slice`` the output layer's input (the
    final norm's hidden states) to the last N positions, N = the input, all of them when it is 0. Every row the
    graph still computes is computed as before."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    head = next((n for n in graph.node if "logits" in n.output), None)
    if head is None or head.op_type != "MatMul":
        raise SpantuneError(f"{path}: no MatMul computes `logits`; cannot add {LOGITS_TO_KEEP}")
    name = "/spantune/logits_to_keep"
    consts = {"zero": (TensorProto.INT64, [], [0]), "ends": (TensorProto.INT64, [1], [2**63 - 1]),
              "axes": (TensorProto.INT64, [1], [1]), "shape": (TensorProto.INT64, [1], [1])}
    graph.initializer.extend(helper.make_tensor(f"{name}/{key}", t, dims, vals) for key, (t, dims, vals) in consts.items())
    k, out = LOGITS_TO_KEEP, f"{name}/hidden"
    slicing = [
        helper.make_node("Greater", [k, f"{name}/zero"], [f"{name}/some"], name=f"{name}/Greater"),
        helper.make_node("Neg", [k], [f"{name}/neg"], name=f"{name}/Neg"),
        helper.make_node("Where", [f"{name}/some", f"{name}/neg", f"{name}/zero"], [f"{name}/start"],
                         name=f"{name}/Where"),
        helper.make_node("Reshape", [f"{name}/start", f"{name}/shape"], [f"{name}/starts"], name=f"{name}/Reshape"),
        helper.make_node("Slice", [head.input[0], f"{name}/starts", f"{name}/ends", f"{name}/axes"], [out],
                         name=f"{name}/Slice"),
    ]
    head.input[0] = out
    nodes = list(graph.node)
    at = nodes.index(head)
    del graph.node[:]
    graph.node.extend(nodes[:at] + slicing + nodes[at:])  # ONNX wants producers before consumers
    graph.input.append(helper.make_tensor_value_info(k, TensorProto.INT64, []))
    logits = next(o for o in graph.output if o.name == "logits")
    logits.type.tensor_type.shape.dim[1].dim_param = "logits_length"  # not the input's sequence length
    save_model(model, path)


def save_model(model: object, path: Path) -> None:
    """Save a ModelProto, putting weights in ``<name>_data`` only when protobuf's 2 GiB limit requires it."""
    import onnx

    big = model.ByteSize() > _PROTOBUF_LIMIT  # type: ignore[attr-defined]
    onnx.save_model(model, str(path), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=f"{path.name}_data")


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Silence onnxruntime's quantizers while they run: a log line per node, and a warning that int4 forces
    opset 21 / IR 10 "may not be valid" — the parity step runs the result and the JS tests load it."""
    loggers = [logging.getLogger(name) for name in ("", "onnxruntime.quantization.matmul_nbits_quantizer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 on all-zero blocks, masked by np.where
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quantize_weights(source: Path, target: Path, opts: QuantOptions) -> Path:
    """Block-quantized weights: MatMuls → int4 DequantizeLinear + MatMul (QDQ; MatMulNBits at 8 bits where
    ``opts.eight_bit`` matches the node name), the embedding → 4-bit GatherBlockQuantized (onnxruntime
    quantizes Gather at 4 bits only, and only as that operator)."""
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(source))
    common = {"block_size": opts.block_size, "is_symmetric": opts.symmetric, "accuracy_level": opts.accuracy_level}

    def quantize(**how: Any) -> None:
        nonlocal model
        quantizer = MatMulNBitsQuantizer(model, **common, **how)
        quantizer.process()
        model = quantizer.model.model

    with quiet_quantizer():
        if opts.eight_bit:
            nodes = weight_matmuls(model, opts.eight_bit)
            if not nodes:
                raise SpantuneError(f"no MatMul with weights matches {opts.eight_bit!r} (8-bit nodes)")
            # only the named nodes ("-" is no op type: nothing else is picked)
            quantize(bits=8, nodes_to_include=nodes, op_types_to_quantize=("-",))
        quantize(bits=4, op_types_to_quantize=("MatMul",), quant_axes=(("MatMul", 0),), quant_format=QuantFormat.QDQ)
        if opts.quantize_embedding:
            quantize(bits=4, op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),))
    save_model(model, target)
    return target


def weight_matmuls(model: object, pattern: str) -> list[str]:
    """Names of the MatMul nodes with a constant weight whose name matches ``pattern``."""
    weights = {init.name for init in model.graph.initializer}  # type: ignore[attr-defined]
    regex = re.compile(pattern)
    return [n.name for n in model.graph.node  # type: ignore[attr-defined]
            if n.op_type == "MatMul" and n.input[1] in weights and regex.search(n.name)]


def convert_fp16(source: Path, target: Path) -> Path:
    """Half-precision weights and activations (inputs/outputs too: Transformers.js reads their types)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=False, disable_shape_infer=True)
    save_model(model, target)
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic 8-bit weights for MatMul (onnxruntime ``quantize_dynamic``; Transformers.js dtype ``int8``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantizer():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         use_external_data_format=source.stat().st_size > _PROTOBUF_LIMIT)
    return target


def dtype_quant(dtype: str, opts: QuantOptions) -> QuantOptions | None:
    """The block-quantization settings behind a dtype (None for fp32, fp16 and dynamic int8)."""
    if dtype in ("q4", "q4f16"):
        return opts
    if dtype == "q8":
        return replace(opts, eight_bit=".")
    return None


def check_grid(source: dict[str, Any], dtypes: Sequence[str], quant: QuantOptions) -> None:
    """A quant-aware run's weights sit on one grid (symmetric, one block size); quantizing them with other
    settings moves them off it and throws away what that training bought, so refuse instead."""
    block = source["quant_aware_block_size"]
    if block is None or not any(dtype_quant(d, quant) for d in dtypes):
        return
    if quant.block_size != block or not quant.symmetric:
        raise SpantuneError(f"{source['adapter']} was trained quant-aware on the symmetric 4-bit grid with block "
                            f"{block}: export it with --block-size {block} and without --asymmetric")


def build_dtype(model_dir: Path, dtype: str, opts: QuantOptions) -> Path:
    """Write ``onnx/model{suffix}.onnx`` for ``dtype`` from the fp32 (or fp16) decoder already there."""
    fp32 = onnx_file(model_dir, "fp32")
    target = onnx_file(model_dir, dtype)
    quant = dtype_quant(dtype, opts)
    if dtype in ("q4", "q8"):
        return quantize_weights(fp32, target, quant)
    if dtype == "fp16":
        return convert_fp16(fp32, target)
    if dtype == "q4f16":
        fp16 = onnx_file(model_dir, "fp16")
        if not fp16.is_file():
            raise SpantuneError("q4f16 is quantized from fp16: ask for fp16 too (--dtypes fp16,q4f16)")
        return quantize_weights(fp16, target, quant)
    if dtype == "int8":
        return quantize_int8(fp32, target)
    raise SpantuneError(f"unknown dtype {dtype!r} (choose {', '.join(DTYPE_SUFFIX)})")


def external_data_config(model_dir: Path) -> dict[str, int]:
    """``transformers.js_config.use_external_data_format`` for decoders whose weights sit in ``*.onnx_data``."""
    return {p.name.removesuffix("_data"): 1 for p in sorted((model_dir / "onnx").glob("*.onnx_data"))}
