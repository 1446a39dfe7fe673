"""The loss on the reply tokens only, without computing logits anywhere else.

A span prompt is ~60-90 tokens and the reply ~3-10, and the output layer of a small model is a
large share of its compute (SmolLM2-135M: 28 M of 135 M parameters, 49 152 logits per position).
TRL's SFTTrainer computes log-probabilities at every position (chunked, with entropy and accuracy
for its logs); here the model's own ``logits_to_keep`` restricts the output layer to the positions
whose next token is trained, in every row of the batch. Measured on SmolLM2-135M, LoRA on every
linear layer, batch 8 × 72 tokens, one CPU thread: 3.9 s CPU per step, against 5.0 s for the
model's full-logits loss and 6.2 s for TRL's default loss.

Every span prompt also starts with the same tokens (chat template head, system prompt, ``Context before: «``),
about a third of each sequence. With ``shared_prefix`` the batch runs as one sequence: that head once, then each
row's own tokens after it, with each row's own positions, up to the row's last trained position (its end-of-turn
token and any padding change no trained logit, so they never run). Inside every attention layer a registered
wrapper of the model's own attention (eager or sdpa, :func:`use_packed_attention`) lets the head attend causally to
itself and each row, laid out again as ``[rows, width]``, to the head's keys and values and its own: every
projection and MLP runs the head once and no padding, no query scores another row's keys, and the head's gradients
flow back once, summed over the rows. Only each row's own trained positions reach the output layer. No key/value
cache is involved, so the path combines with compiled layers and gradient checkpointing. Same loss and gradients
as the plain path up to floating-point order (tests/test_train.py); speed in benchmarks/RESULTS.md. Flash attention
(no wrapper) keeps the plain path.

Under mixed precision the loss's forward feeds each adapter its half-precision input as is: PEFT would cast it to
the adapter's fp32 and autocast would cast it straight back for the matmul, a round trip that changes no value
and copied every activation twice (~12 % of a bf16 CPU step).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from peft.helpers import disable_input_dtype_casting
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
from transformers.models.llama.modeling_llama import eager_attention_forward
from trl import SFTTrainer

from spantune.train.compiled import eager
from spantune.train.data import IGNORE_INDEX


def trained_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, position) of every position whose next token carries a label, row by row."""
    return (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)


def kept_positions(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions whose next token carries a label in at least one row, in order."""
    return trained_pairs(labels)[1].unique()


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, keep: torch.Tensor) -> int:
    """How many leading tokens every row of the batch shares (none padded), stopping at the first position
    whose logits are needed; 0 for a single row, where there is nothing to share."""
    if input_ids.size(0) < 2 or keep.numel() == 0:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0)
    if attention_mask is not None:
        same &= attention_mask.bool().all(dim=0)
    return min(int(same.long().cumprod(0).sum()), int(keep.min()))


#: the attention implementations a packed batch runs under, one per implementation of the model it wraps
PACKED_ATTENTION = {base: f"spantune_packed_{base}" for base in ("eager", "sdpa")}
PACKED_NAMES = frozenset(PACKED_ATTENTION.values())


@dataclass(frozen=True)
class Packed:
    """A batch packed around its shared head (:func:`pack_shared_prefix`)."""

    ids: torch.Tensor        # [1, head + n]: the head once, then each row's own tokens up to its last trained position
    positions: torch.Tensor  # [1, head + n]: each token's position in its own row
    mask: torch.Tensor       # [rows, 1, width, head + width] bool: row query i may attend to key j (head, then own)
    slots: torch.Tensor      # [rows * width]: the own token (of the n after the head) in each slot of the rows laid
                             # out [rows, width]; n where the slot is empty
    tokens: torch.Tensor     # [n]: the slot of each own token (the inverse of ``slots``)
    index: torch.Tensor      # [pairs]: where the position of each trained pair (:func:`trained_pairs`) sits
    targets: torch.Tensor    # [pairs]: the token each trained pair's logits predict


def pack_shared_prefix(input_ids: torch.Tensor, labels: torch.Tensor, prefix: int) -> Packed:
    """Pack a right-padded batch whose rows share their first ``prefix`` tokens (every trained position at or
    after it). A row ends at its last trained position: later tokens (its end-of-turn token, padding) change no
    logit that is trained, so neither they nor any padding run through the model."""
    rows, device = input_ids.size(0), input_ids.device
    row, position = trained_pairs(labels)
    ends = torch.zeros(rows, dtype=torch.long, device=device).scatter_reduce(0, row, position + 1, "amax")
    lengths = (ends - prefix).clamp(min=0)  # 0: a row that trains nothing
    width = int(lengths.max())
    starts = prefix + lengths.cumsum(0) - lengths
    grid = torch.arange(width, device=device)
    real = grid < lengths[:, None]  # [rows, width]
    tokens = real.flatten().nonzero().flatten()
    slots = torch.where(real, starts[:, None] - prefix + grid, tokens.numel()).flatten()
    ids = torch.cat([input_ids[0, :prefix], input_ids[:, prefix:prefix + width].flatten()[tokens]])
    positions = torch.cat([torch.arange(prefix, device=device), (prefix + grid).repeat(rows)[tokens]])
    own = torch.ones(width, width, dtype=torch.bool, device=device).tril() & real[:, None, :]
    mask = torch.cat([torch.ones(rows, width, prefix, dtype=torch.bool, device=device), own], dim=2)
    return Packed(ids[None], positions[None], mask[:, None], slots, tokens, starts[row] + position - prefix,
                  labels[row, position + 1])


class Relayout(torch.autograd.Function):
    """``x.index_select(dim, index)`` where ``index`` picks each entry at most once (``x.size(dim)``: a zero entry),
    whose backward is the gather by ``inverse`` (``index``'s inverse; the gradient's size along ``dim`` where
    nothing picked the entry) rather than autograd's scatter-add: inductor compiles a scatter-add on a CPU to
    atomic adds, whose kernels took ~4 % of a step of the CPU recipe (benchmarks/RESULTS.md, run 19)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.dim = dim
        ctx.save_for_backward(inverse)
        return gather_or_zero(x, dim, index)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (inverse,) = ctx.saved_tensors
        return gather_or_zero(grad, ctx.dim, inverse), None, None, None


def gather_or_zero(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``x``'s entries along ``dim`` at ``index``; zeros where ``index`` is ``x.size(dim)``."""
    zero = x.new_zeros(x.shape[:dim] + (1,) + x.shape[dim + 1:])
    return torch.cat([x, zero], dim=dim).index_select(dim, index)


def grouped_eager_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            mask: torch.Tensor, *, scaling: float, dropout: float = 0.0,
                            **_: Any) -> tuple[torch.Tensor, None]:
    """transformers' eager attention (``softmax(QK^T * scaling)V``, softmax in fp32, ``mask`` bool: True attends),
    with each key/value head's query heads stacked along the query length instead of each key and value repeated
    per query head: a grouped-query model's keys and values are then neither copied in the forward pass nor
    summed back over the copies in the backward pass (benchmarks/RESULTS.md, run 19)."""
    rows, heads, length, dim = query.shape
    groups = heads // key.size(1)
    scores = torch.matmul(query.reshape(rows, key.size(1), groups * length, dim), key.transpose(2, 3)) * scaling
    scores = scores.masked_fill(~mask.repeat(1, 1, groups, 1), torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).view(rows, heads, length, dim).transpose(1, 2).contiguous(), None


def packed_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, *, base: str, spantune_packed: torch.Tensor | None = None,
                     spantune_slots: torch.Tensor | None = None, spantune_tokens: torch.Tensor | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """The model's own ``base`` attention (eager or sdpa), which a call with ``spantune_packed`` runs over a packed
    batch (:class:`Packed`; ``attention_mask`` is its ``mask``, ``spantune_slots`` and ``spantune_tokens`` its
    ``slots`` and ``tokens``): the head attends causally to itself, and each row, laid out as ``[rows, width]``,
    to the head's keys and values (expanded over the rows, a view: their gradients sum back once) and its own. No
    query scores a key of another row, so attention costs what it costs in the plain batch, while every projection
    and MLP runs the head once. An empty slot holds zeros: masked as a key, and its output as a query is dropped. Both
    layouts are :class:`Relayout` gathers. Eager attention runs as :func:`grouped_eager_attention`."""
    if spantune_packed is None:
        plain = eager_attention_forward if base == "eager" else ALL_ATTENTION_FUNCTIONS[base]
        return plain(module, query, key, value, attention_mask, **kwargs)
    attend = grouped_eager_attention if base == "eager" else ALL_ATTENTION_FUNCTIONS[base]
    rows, _, width, _ = attention_mask.shape
    head = spantune_packed.shape[-1]

    # contiguous copies: inductor fails on views of these symbolic-size slices ("Exponent must be non-negative")
    def shared(x: torch.Tensor) -> torch.Tensor:  # [1, heads, head + n, dim] -> [1, heads, head, dim]
        return x[:, :, :head].contiguous()

    def own(x: torch.Tensor) -> torch.Tensor:  # [1, heads, head + n, dim] -> [rows, heads, width, dim]
        laid_out = Relayout.apply(x[0, :, head:], 1, spantune_slots, spantune_tokens)
        return laid_out.unflatten(1, (rows, width)).transpose(0, 1).contiguous()

    def with_head(head_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head_x.expand(rows, -1, -1, -1), own(x)], dim=2)

    head_key, head_value = shared(key), shared(value)
    head_out, _ = attend(module, shared(query), head_key, head_value, spantune_packed, **kwargs)
    row_out, _ = attend(module, own(query), with_head(head_key, key), with_head(head_value, value), attention_mask,
                        **kwargs)  # [rows, width, heads, dim]
    own_out = Relayout.apply(row_out.flatten(0, 1), 0, spantune_tokens, spantune_slots)
    return torch.cat([head_out, own_out[None]], dim=1), None


for _base, _name in PACKED_ATTENTION.items():
    AttentionInterface.register(_name, partial(packed_attention, base=_base))
    AttentionMaskInterface.register(_name, ALL_MASK_ATTENTION_FUNCTIONS[_base])


def use_packed_attention(model: Any) -> bool:
    """Give the model the packed-batch wrapper of its attention implementation for the whole run (a layer
    recomputed under gradient checkpointing calls it again in the backward pass); False, leaving the model as it
    is, where the implementation has none (flash attention takes no mask)."""
    base = model.config._attn_implementation
    if base not in PACKED_ATTENTION:
        return base in PACKED_NAMES
    model.get_base_model().set_attn_implementation(PACKED_ATTENTION[base])
    return True


def forward_trained(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    labels: torch.Tensor, prefix: int) -> tuple[Any, torch.Tensor]:
    """The model's outputs with logits ``[n, vocab]`` where a next token is trained, and those ``n`` next tokens
    (:data:`IGNORE_INDEX` where a row has none). The plain batch (``prefix`` 0) ends at its last trained
    position and keeps every row's logits at every position any row trains; with ``prefix`` > 0 the batch runs
    packed around its shared head (:func:`pack_shared_prefix`, which needs :func:`use_packed_attention`), and
    only each row's own trained positions reach the output layer."""
    if prefix == 0:
        keep = kept_positions(labels)
        end = int(keep.max()) + 1 if keep.numel() else input_ids.size(1)
        outputs = model(input_ids=input_ids[:, :end],
                        attention_mask=None if attention_mask is None else attention_mask[:, :end],
                        logits_to_keep=keep, use_cache=False)
        outputs.logits = outputs.logits.flatten(0, 1)
        return outputs, labels[:, keep + 1].flatten()
    packed = pack_shared_prefix(input_ids, labels, prefix)
    head_mask = torch.ones(prefix, prefix, dtype=torch.bool, device=input_ids.device).tril()[None, None]
    outputs = model(input_ids=packed.ids, attention_mask=packed.mask, position_ids=packed.positions,
                    logits_to_keep=packed.index, use_cache=False, spantune_packed=head_mask,
                    spantune_slots=packed.slots, spantune_tokens=packed.tokens)
    outputs.logits = outputs.logits[0]
    return outputs, packed.targets


class SpanSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss evaluates the output layer only where a label is trained, and runs the prompt
    head the batch shares once when ``shared_prefix`` is on and the model runs :func:`use_packed_attention`'s
    wrapper (not under flash attention)."""

    def __init__(self, *args: Any, shared_prefix: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_prefix = shared_prefix

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        """The evaluation (eval loss, and the generation eval its callbacks run) with compiled layers run eagerly."""
        with eager():
            return super().evaluate(*args, **kwargs)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        mode = "train" if self.model.training else "eval"
        labels, input_ids, attention_mask = inputs["labels"], inputs["input_ids"], inputs.get("attention_mask")
        prefix = 0
        if self.shared_prefix and self.accelerator.unwrap_model(model).config._attn_implementation in PACKED_NAMES:
            prefix = shared_prefix_length(input_ids, attention_mask, kept_positions(labels))
        with disable_input_dtype_casting(model, active=self.args.bf16 or self.args.fp16):  # autocast is on
            outputs, targets = forward_trained(model, input_ids, attention_mask, labels, prefix)
        logits = outputs.logits.float()
        loss_sum = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        valid = targets != IGNORE_INDEX
        count = valid.sum() if num_items_in_batch is None else num_items_in_batch
        loss = loss_sum / torch.as_tensor(count).clamp(min=1)
        # like Trainer/TRL: num_items_in_batch counts every rank's tokens and DDP averages gradients
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes

        # the metrics TRL logs: token accuracy on trained tokens, and real (non-padding) tokens seen
        with torch.no_grad():
            correct = ((logits.argmax(-1) == targets) & valid).sum()
        n_valid = self.accelerator.gather_for_metrics(valid.sum()).sum()
        n_correct = self.accelerator.gather_for_metrics(correct).sum()
        self._metrics[mode]["mean_token_accuracy"].append((n_correct / n_valid.clamp(min=1)).item())
        if mode == "train":
            real = inputs["attention_mask"].sum()
            self._total_train_tokens += self.accelerator.gather_for_metrics(real).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss
