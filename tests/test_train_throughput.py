"""benchmarks/train_throughput.py runs end to end (tiny model) and compares like with like."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from train_helpers import ROOT, cli_env, span_rows, write_jsonl

from spantune import allocator


def test_throughput_benchmark_runs_both_trainers_on_the_same_examples(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", span_rows(40, 5))
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--model",
                           str(tiny_model_dir), "--data", str(data), "--examples", "24", "--threads", "1",
                           "--json", str(out), "--quant-aware", "--precisions", "--rows", "bf16,fp32+glibc",
                           "--repeats", "2"],
                          env=cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["examples"] == 24
    assert result["spantune"]["steps"] == 3 and result["naive"]["steps"] == 6  # batch 8 vs batch 4
    # padding every example to 512 tokens costs CPU time even on a 2-layer model
    assert result["cpu_speedup"] > 1.5, result
    assert "useful tokens/s: spantune / naive" in proc.stdout
    assert result["quant-aware"]["steps"] == 3 and "quant-aware cost" in proc.stdout
    # the CPU recipe at fp32 and, where the CPU computes bf16 natively, at bf16, on the same examples, each row in a
    # child process of its own, twice (the second round in reverse order)
    fp32 = result["recipe fp32"]
    assert fp32["steps"] == 3 and fp32["precision"] == "fp32 (cpu, as configured)" and len(fp32["rounds"]) == 2
    # the steady-state rate leaves out the first 2 steps: one step is left to time
    assert all(r[rate] > 0 for r in fp32["rounds"] for rate in ("steady_tokens_per_s", "median_step_tokens_per_s"))
    # the kernel's high-water mark, reset at the start of the phase: training holds more than it started with
    assert all(r["peak_bytes"] > 0 for r in fp32["rounds"]) and result["spantune"]["peak_bytes"] > 0
    assert fp32["steady_tokens_per_s"] == statistics.median(r["steady_tokens_per_s"] for r in fp32["rounds"])
    assert not any(label in result for label in ("recipe fp32+compile", "recipe bf16+compile+prefix"))  # --rows
    # each row trains on the allocator the spantune command would run on; the +glibc row on the C library's
    assert result["recipe fp32+glibc"]["allocator"] == "system"
    assert {r["allocator"] for r in fp32["rounds"]} == {(allocator.wanted({}) or ("system",))[0]}
    if result["cpu_bf16"] is None:
        assert "recipe bf16" not in result and "recipe bf16: skipped: config key model.precision" in proc.stdout
    else:
        bf16 = result["recipe bf16"]
        assert bf16["steps"] == 3 and bf16["precision"].startswith("bf16 (cpu")
        assert bf16["useful_tokens"] == fp32["useful_tokens"]
        # against both baselines: today's fp32 recipe, and the same on the C library's allocator
        assert {base: len(r["steady_tokens_per_s"]) for base, r in bf16["ratios"].items()} == {
            "recipe fp32": 2, "recipe fp32+glibc": 2}
        assert "recipe bf16 / fp32: useful tokens/s" in proc.stdout and "(rounds: " in proc.stdout
