"""Run rendered projects' own test suites, and the default sweep through the installed `mlops` command."""

import json
import os
import subprocess

import pytest

from support.render import make_venv, render


def _env():
    # The rendered tests must not inherit a W&B key or mode from whoever runs the template's tests.
    return {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}


@pytest.mark.parametrize("variant", [{}, {"ml_framework": "pytorch"}], ids=["default", "pytorch"])
def test_rendered_project_suite_passes(tmp_path, variant):
    if variant.get("ml_framework") == "pytorch":
        pytest.importorskip("torch", reason="the pytorch variant's tests need torch==2.13.0 installed (.ci/run does)")
    project = render(tmp_path, **variant)
    venv = make_venv(project)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q"],
        cwd=project,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]


def test_default_sweep_through_the_console_script(tmp_path):
    project = render(tmp_path)
    venv = make_venv(project)
    mlops = venv / "bin" / "mlops"
    check = subprocess.run([str(mlops), "params", "validate"], cwd=project, capture_output=True, text=True)
    assert check.returncode == 0 and "ok, " in check.stdout
    count = int(check.stdout.split("ok, ")[1].split()[0])
    result = subprocess.run(
        [str(mlops), "run", "--local", "--jobs", "2", "--run-id", "demo"],
        cwd=project,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((project / "runs" / "demo" / "results" / "summary.json").read_text())
    assert summary["counts"]["completed"] == count == len(summary["configurations"])
    assert all(c["metrics"]["mae"] > 0 for c in summary["configurations"])
    assert (project / "runs" / "demo" / "results" / "summary.csv").is_file()
