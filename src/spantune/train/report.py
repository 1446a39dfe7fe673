"""What a finished run folder shows a person: a loss / exact-match plot and a short model card.

The card's base-model and data-licence lines are shared with the export's card (``spantune.export.card``), so the
licence terms travel with the weights wherever they go.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spantune.io import atomic_write
from spantune.runinfo import NO_MANIFEST, public_base_model

_USE = {True: "commercial use allowed", False: "non-commercial", None: "commercial use not stated"}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(rows: list[dict[str, Any]], out: Path) -> None:
    """Training/eval loss (left axis) and eval exact match (right axis) over optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label, style in (("loss", "train loss", "-"), ("eval_loss", "eval loss", "o--")):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, style, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (reply tokens)")
    handles, labels = ax.get_legend_handles_labels()
    xs, ys = series("eval_exact_match")
    if xs:
        ax2 = ax.twinx()
        ax2.plot(xs, [100 * y for y in ys], "s-", color="tab:green", label="eval exact match")
        ax2.set_ylabel("exact match (%)")
        ax2.set_ylim(0, 100)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="upper right")
    ax.set_title("spantune training")
    fig.tight_layout()
    with atomic_write(out, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def base_model_text(base: dict[str, Any]) -> str:
    """`public name` (licence; how it was obtained) for a card's base-model line."""
    note = f"; {base['note']}" if base.get("note") else ""
    return f"`{base['name']}` ({base['license']}{note})"


def _sources(entry: dict[str, Any]) -> list[dict[str, Any]] | str:
    """A run_info data entry's sources; runs recorded before sources were read count as having no manifest."""
    return entry.get("sources", NO_MANIFEST)


def sources_text(entry: dict[str, Any]) -> str:
    """Each source of one data file with its licence and whether it allows commercial use."""
    sources = _sources(entry)
    if isinstance(sources, str):
        return sources
    return "; ".join(f"{s['name']} ({s['kind']}): {s['license'] or 'licence not stated'} ({_USE[s['commercial']]})"
                     for s in sources) or "none listed in its manifest"


def source_names(entry: dict[str, Any]) -> str:
    sources = _sources(entry)
    return sources if isinstance(sources, str) else ", ".join(s["name"] for s in sources)


def licence_lines(data: dict[str, dict[str, Any]]) -> list[str]:
    """What the data allows the weights to be used for: a plain non-commercial notice naming the sources when
    any of them forbids commercial use, and a warning for data whose origin or terms are not recorded."""
    by_name = {s["name"]: s for entry in data.values() if isinstance(src := _sources(entry), list) for s in src}
    noncommercial = [s for s in by_name.values() if s["commercial"] is False]
    unstated = [name for name, s in by_name.items() if s["commercial"] is None]
    unknown = [f"`{entry['path']}`" for entry in data.values() if isinstance(_sources(entry), str)]
    lines = []
    if noncommercial:
        lines.append("**Non-commercial use only.** These weights are derived from non-commercial data: "
                     + "; ".join(f"{s['name']} ({s['license']})" for s in noncommercial)
                     + ". The synthetic training spans are made from these sources' text and carry their licences.")
    if unknown:
        lines.append(f"The sources and licences of {', '.join(unknown)} are {NO_MANIFEST}: "
                     "check them before any commercial use.")
    if unstated:
        lines.append(f"Commercial use is not stated for {', '.join(unstated)}: check before any commercial use.")
    if data and not lines:
        lines.append("Every data source allows commercial use (per its manifest).")
    return lines


def model_card(config: dict[str, Any], info: dict[str, Any], summary: dict[str, Any]) -> str:
    """README.md of a run: what was trained on what, how well, and how to use it."""
    model, lora, train = config["model"], config["lora"], config["train"]
    data = info.get("data", {})
    data_lines = "\n".join(f"- {name}: `{d['path']}` (sha256 `{d['sha256'][:16]}…`)\n  - sources: {sources_text(d)}"
                           for name, d in data.items())
    licence = "\n\n".join(licence_lines(data))
    base = public_base_model(model["name"])
    best = summary.get("best")
    chosen_on = (f" on `{data['eval']['path']}` (sources: {source_names(data['eval'])})" if "eval" in data else "")
    best_line = (f"- best checkpoint: step {best['step']}, {best['metric']} = {best['value']:.4f}{chosen_on}"
                 if best else "- no evaluation during training (last weights kept)")
    stop = summary.get("stopped_by") or "schedule finished"
    batch = f"batch {train['batch_size']} × accumulation {train['grad_accum']} × {summary['world_size']} process(es)"
    speed = summary.get("tokens_per_s") or "n/a"
    lr = f"lr {train['learning_rate']} {train['lr_scheduler']}"
    return f"""# spantune span corrector (LoRA adapter)

A LoRA adapter that teaches `{base['name']}` to answer a span prompt with the corrected span alone
(the prompt contract is `spantune.prompt`; the reply and its end-of-turn token were the only trained tokens).

## Licence

{licence}

Base model: {base_model_text(base)}.

## Training
- base model: `{base['name']}`{' (4-bit NF4, QLoRA)' if model['qlora'] else ''}, precision {summary['precision']}
- LoRA: r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']}, targets {', '.join(lora['target_modules'])}
- optimizer steps: {summary['global_step']} ({lr}, {batch}), seed {train['seed']}
- stopped by: {stop}; wall time {summary['train_runtime_s']:.0f} s; throughput {speed} tokens/s
{best_line}
- last training loss: {summary.get('last_loss', 'n/a')}

## Data
{data_lines}

## Files
- `adapter/`: the adapter and the tokenizer (pad token `{summary['pad_token']}`)
- `config.yaml`, `run_info.json`: resolved config, data hashes, package versions, git commit
- `metrics.jsonl`, `curves.png`: training and evaluation metrics over steps

## Use
```
spantune fix --model {summary['run_dir']} --span "..." --before "..." --after "..."
```
Generated by `spantune train` ({info.get('git_commit') or 'no git commit'}).
"""
