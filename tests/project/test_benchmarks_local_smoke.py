"""The benchmark scripts' --smoke modes run and print their figures (issue #7).

Not timed tests: nothing here compares a figure with a goal. What is checked is that each script
runs the real code path to the end and reports the figures it promises (a renamed function or a
broken cluster command would make a script crash or print nothing). The cluster ones start sshd,
SLURM and rootless podman like the e2e tier, so they belong to it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
NUMBER = r"\d+(?:\.\d+)?"


def bench(name: str, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"bench_{name}.py"), "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.startswith("machine: "), proc.stdout[:500]
    return proc.stdout


def test_scale_smoke_prints_every_step(tmp_path):
    out = bench("scale", "--json", str(tmp_path / "scale.json"))
    for step in ("validate", "expand", "validate+expand", "write_envs", "plan", "collect"):
        assert re.search(rf"^  {re.escape(step)} +{NUMBER} s +peak RSS +{NUMBER} MB", out, re.M), (step, out)
    figures = json.loads((tmp_path / "scale.json").read_text())
    steps = figures["steps"]
    assert (
        steps["expand"]["configurations"] == 200 and steps["write_envs"]["files"] == 202
    )  # 200 env files + index.json + ids.txt
    assert steps["plan"]["model_sbatch_calls"] == figures["goal_sbatch_calls"] == 1
    collect = steps["collect"]
    assert collect["rows"] == 200 and collect["counts"] == {"completed": 198, "failed": 2}
    assert {"junit.xml", "metrics.txt", "summary.csv", "summary.json", "sweep.png"} <= set(collect["outputs"])
    assert "load average" in out.splitlines()[-1]


def test_scale_plan_splits_at_max_array_size(tmp_path):
    bench("scale", "--max-array-size", "64", "--json", str(tmp_path / "scale.json"))
    plan = json.loads((tmp_path / "scale.json").read_text())["steps"]["plan"]
    assert plan["model_sbatch_calls"] == plan["arrays"] == 4  # ceil(200 / 64)
    assert plan["largest_task_id"] <= 63


def test_render_smoke_and_results_table(tmp_path):
    out = bench("render_sweep", "--json", str(tmp_path / "render_sweep.json"))
    assert re.search(rf"render \(cookiecutter --no-input, hooks included\): median {NUMBER}s", out), out
    bench("scale", "--json", str(tmp_path / "scale.json"))
    sys.path.insert(0, str(BENCH))
    from bench_all import table

    results = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("render_sweep", "scale")}
    rows = table(results, smoke=True)
    assert any(r.startswith("| render | `cookiecutter --no-input`") for r in rows), rows
    assert any("sbatch calls for the model stage" in r and r.endswith("| yes |") for r in rows), rows
    assert any("`mlops collect` of 200 result dirs" in r for r in rows), rows


def test_state_read_smoke_reads_every_record():
    out = bench("state_read")
    found = re.search(
        rf"state read of 200 task records .*: {NUMBER} s, ([\d,]+) bytes sent, 200 records, 0 problems", out
    )
    assert found and int(found.group(1).replace(",", "")) > 0, out
