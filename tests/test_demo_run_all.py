"""benchmarks/run_all.py: the summary table reads every benchmark's JSON and says where a target is missed."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_summary_rows_targets_and_bad_files(tmp_path):
    run_all = _run_all()
    d = json.loads((ROOT / "benchmarks" / "results" / "policy_speed_cpu.json").read_text())
    d["policies"]["labvla"]["chunk_latency_ms"]["median"] = 10 * d["policies"]["pi05"]["chunk_latency_ms"]["median"]
    d["targets"]["chunk_latency_le_0.8x_pi05"]["met"] = False
    (tmp_path / "policy_speed_cpu.json").write_text(json.dumps(d))
    serving = json.loads((ROOT / "benchmarks" / "results" / "serving.json").read_text())
    slow = serving["overhead"]["labvla, 20 ms model"]["4"]  # issue 15's target row, made to miss
    slow["overhead_p99_ms"] = 2 * serving["overhead"]["openpi, 20 ms model"]["4"]["overhead_p99_ms"]
    (tmp_path / "serving.json").write_text(json.dumps(serving))
    (tmp_path / "sim_speed.json").write_text("{not json")
    out = run_all.summary(tmp_path, ["policy_speed", "serving", "sim_speed", "franka_loop"], {"franka_loop": "exit code 1"},
                          quick=True)
    text = out.read_text()
    latency = next(line for line in text.splitlines() if "chunk latency" in line and "pi05" in line)
    assert "| 10 |" in latency and "**no**" in latency  # ratio ours/peer and the missed target
    assert "| serving | server overhead p50 ms, 1 client(s)" in text
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| serving |")}
    assert "| 2 |" in rows["server overhead p99 ms, 4 client(s), 20 ms model"]
    assert "**no**" in rows["server overhead p99 ms, 4 client(s), 20 ms model"]
    assert "**no**" not in rows["server overhead p50 ms, 4 client(s), 20 ms model"]
    assert "<= openpi" not in rows["server overhead p50 ms, 4 client(s), zero model"]  # a comparison, no target
    assert "(unreadable sim_speed.json" in text
    assert "(no results: exit code 1)" in text
    assert "quick smoke runs" in text and "load average" in text


def test_unknown_benchmark_is_one_line_exit_2(capsys):
    assert _run_all().main(["--no-run", "--only", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
