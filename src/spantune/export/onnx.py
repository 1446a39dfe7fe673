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
from collections import Counter
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


#: what :func:`quantize_int8` writes, for the manifest and the model card
INT8_SCHEME = {"method": "spantune per-token int8 (MatMulInteger)",
               "weights": "int8, one scale per output column, symmetric",
               "activations": ("uint8, one scale per token (largest magnitude / 127, zero point 128), "
                               "computed in the graph"),
               "embedding": "int8 rows, one scale each"}


def quantize_int8(source: Path, target: Path) -> Path:
    """8-bit weights and 8-bit activations with one scale per token (Transformers.js dtype ``int8``).

    Every MatMul with a constant weight becomes ``MatMulInteger`` over int8 weights (one scale per output column)
    and uint8 activations quantized inside the graph with one scale per token (its largest magnitude / 127, zero
    point 128); the embedding table becomes int8 rows with one scale each. onnxruntime's ``quantize_dynamic``
    takes one activation scale over the whole pass instead, so a token's answer depended on which other tokens
    shared its pass and the prefix cache and copy drafts changed answers (benchmarks/RESULTS.md, run 13); here a
    token's product depends on that token alone. ~25 % of fp32's size on SmolLM2-135M.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    uses = Counter(name for node in graph.node for name in node.input)
    # weights one node reads (a table shared with another node stays as it is)
    weights = {init.name: init for init in graph.initializer if uses[init.name] == 1}
    added: list[Any] = []
    replaced: set[str] = set()

    def replace(name: str) -> Any:
        """The fp32 values of weight ``name``, which the int8 graph no longer keeps."""
        replaced.add(name)
        return numpy_helper.to_array(weights[name]).astype(np.float32)

    def const(name: str, value: Any) -> str:
        added.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def int8_rows(table: Any, axis: int) -> tuple[Any, Any]:
        """``table`` as int8 with one scale per slice along ``axis`` (symmetric, largest magnitude → 127)."""
        scale = np.maximum(np.abs(table).max(axis=axis, keepdims=True), 1e-30) / 127.0
        return np.clip(np.round(table / scale), -127, 127).astype(np.int8), scale.astype(np.float32)

    p = "/spantune/int8"
    axes, tiny, top, zero = (const(f"{p}/axes", np.array([-1], np.int64)), const(f"{p}/tiny", np.float32(1e-30)),
                             const(f"{p}/127", np.float32(127.0)), const(f"{p}/zp", np.uint8(128)))
    unit = const(f"{p}/unit", np.float32(1.0))
    tokens: dict[str, tuple[str, str]] = {}  # activation → (its uint8 tokens, their scales): q, k and v share one

    def quantized_tokens(x: str) -> tuple[list[Any], str, str]:
        if x in tokens:
            return [], *tokens[x]
        t = f"{p}/tokens{len(tokens)}"
        tokens[x] = (f"{t}/q", f"{t}/scale")
        return [helper.make_node("Abs", [x], [f"{t}/abs"]),
                helper.make_node("ReduceMax", [f"{t}/abs", axes], [f"{t}/max"], keepdims=1),
                helper.make_node("Max", [f"{t}/max", tiny], [f"{t}/top"]),
                helper.make_node("Div", [f"{t}/top", top], [f"{t}/scale"]),
                helper.make_node("Div", [top, f"{t}/top"], [f"{t}/inverse"]),
                helper.make_node("Mul", [x, f"{t}/inverse"], [f"{t}/scaled"]),
                helper.make_node("QuantizeLinear", [f"{t}/scaled", unit, zero], [f"{t}/q"])], *tokens[x]

    nodes: list[Any] = []
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            w, w_scale = int8_rows(replace(node.input[1]), axis=0)
            quantize, q, scale = quantized_tokens(node.input[0])
            o = node.output[0]
            nodes += quantize + [
                helper.make_node("MatMulInteger", [q, const(f"{node.input[1]}/int8", w), zero], [f"{o}/int32"],
                                 name=f"{node.name}Integer"),
                helper.make_node("Cast", [f"{o}/int32"], [f"{o}/float"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{o}/float", const(f"{node.input[1]}/scale", w_scale[0])], [f"{o}/columns"]),
                helper.make_node("Mul", [f"{o}/columns", scale], [o])]
        elif node.op_type == "Gather" and node.input[0] in weights:
            table, row_scale = int8_rows(replace(node.input[0]), axis=1)
            ids, o = node.input[1], node.output[0]
            nodes += [helper.make_node("Gather", [const(f"{node.input[0]}/int8", table), ids], [f"{o}/int8"]),
                      helper.make_node("Gather", [const(f"{node.input[0]}/scale", row_scale), ids], [f"{o}/scale"]),
                      helper.make_node("Cast", [f"{o}/int8"], [f"{o}/float"], to=TensorProto.FLOAT),
                      helper.make_node("Mul", [f"{o}/float", f"{o}/scale"], [o])]
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [init for init in graph.initializer if init.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    save_model(model, target)
    return target


def dtype_quant(dtype: str, opts: QuantOptions) -> QuantOptions | None:
    """The block-quantization settings behind a dtype (None for fp32, fp16 and int8)."""
    if dtype in ("q4", "q4f16"):
        return opts
    if dtype == "q8":
        return replace(opts, eight_bit=".")
    return None


def quant_record(dtype: str, opts: QuantOptions) -> dict[str, Any] | None:
    """How ``dtype``'s file was quantized, as the manifest and the model card state it (None for fp32 and fp16)."""
    if dtype == "int8":
        return INT8_SCHEME
    quant = dtype_quant(dtype, opts)
    return quant.to_dict() if quant else None


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
