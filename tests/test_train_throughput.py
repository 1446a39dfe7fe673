"""benchmarks/train_throughput.py runs end to end (tiny model) and compares like with like."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from train_helpers import ROOT, cli_env, span_rows, write_jsonl


def test_throughput_benchmark_runs_both_trainers_on_the_same_examples(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", span_rows(40, 5))
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--model",
                           str(tiny_model_dir), "--data", str(data), "--examples", "24", "--threads", "1",
                           "--json", str(out), "--quant-aware", "--precisions"], env=cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["examples"] == 24
    assert result["spantune"]["steps"] == 3 and result["naive"]["steps"] == 6  # batch 8 vs batch 4
    # padding every example to 512 tokens costs CPU time even on a 2-layer model
    assert result["cpu_speedup"] > 1.5, result
    assert "useful tokens/s: spantune / naive" in proc.stdout
    assert result["quant-aware"]["steps"] == 3 and "quant-aware cost" in proc.stdout
    # the CPU recipe at fp32 and, where the CPU computes bf16 natively, at bf16, on the same examples
    assert result["recipe fp32"]["steps"] == 3 and result["recipe fp32"]["precision"] == "fp32 (cpu, as configured)"
    assert result["recipe fp32+compile"]["steps"] == 3
    # the steady-state rate leaves out the first 2 steps (compilation): one step is left to time
    assert all(result[label][rate] > 0 for label in ("recipe fp32", "recipe fp32+compile")
               for rate in ("steady_tokens_per_s", "median_step_tokens_per_s"))
    for label in ("recipe bf16", "recipe bf16+prefix", "recipe bf16+compile", "recipe bf16+compile+prefix"):
        if result["cpu_bf16"] is None:
            assert label not in result and f"{label}: skipped: config key model.precision" in proc.stdout
        else:
            assert result[label]["steps"] == 3 and result[label]["precision"].startswith("bf16 (cpu")
            assert f"{label} / fp32: useful tokens/s" in proc.stdout
            assert result[label]["useful_tokens"] == result["recipe fp32"]["useful_tokens"]
