"""The benchmark scripts' --smoke modes run and print their figures (issue #7).

Not timed tests: nothing here compares a figure with a goal. What is checked is that each script
runs the real code path to the end and reports the figures it promises (a renamed function or a
broken cluster command would make a script crash or print nothing). The cluster ones start sshd,
SLURM and rootless podman like the e2e tier, so they belong to it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the cluster benchmarks start sshd, SLURM and a cluster user: they need root (as the e2e tier)",
)


@needs_root
@pytest.mark.timeout(1200)
def test_redeploy_smoke_reports_bytes_per_deploy(tmp_path):
    out = bench("redeploy", "--json", str(tmp_path / "redeploy.json"), timeout=1100)
    for scenario in ("first", "unchanged", "code-only", "requirements"):
        assert re.search(rf"^  {scenario} +{NUMBER} +{NUMBER} +[\d,]+ ", out, re.M), (scenario, out)
    deploys = {d["scenario"]: d for d in json.loads((tmp_path / "redeploy.json").read_text())["deploys"]}
    # shared base layers are sent once: less than the three images' sizes together
    assert 0 < deploys["first"]["bytes"] < sum(deploys["first"]["sizes"].values())
    assert deploys["unchanged"]["bytes"] == 0
    assert deploys["code-only"]["per_image"]["params"] == deploys["code-only"]["per_image"]["data"] == 0
    assert 0 < deploys["code-only"]["bytes"] <= 1_000_000


@needs_root
@pytest.mark.timeout(1200)
def test_throughput_smoke_runs_all_contenders(tmp_path):
    out = bench("throughput", "--json", str(tmp_path / "throughput.json"), timeout=1100)
    for name in ("ideal", "bare sbatch --array", "submitit", "mlops submit, model stage", "mlops submit, end to end"):
        assert re.search(rf"^  {re.escape(name)}.* {NUMBER} +{NUMBER} +{NUMBER}", out, re.M), (name, out)
    figures = json.loads((tmp_path / "throughput.json").read_text())
    assert figures["completed"] == {"mlops": 4, "submitit": 4, "bare": 4}
    assert figures["container"]["podman_run_s"] > 0 and figures["bare_array_s"] > 0
