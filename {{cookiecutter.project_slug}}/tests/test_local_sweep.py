"""`mlops run --local`: the whole sweep on this machine; a failing configuration loses nothing."""
import csv
import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture
def project(tmp_path):
    """A copy of this project, so the sweep's runs/ directory lands in tmp."""
    dst = tmp_path / "project"
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns("runs", ".venv", ".git", "__pycache__", "*.egg-info"))
    return dst


def mlops(project, *args):
    return subprocess.run([sys.executable, "-m", "mlops", *args], cwd=project, capture_output=True, text=True)


def only_run(project):
    (run,) = (project / "runs").iterdir()
    return run


def test_local_sweep_produces_every_result(project):
    result = mlops(project, "run", "--local", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    run = only_run(project)
    index = json.loads((run / "envs" / "index.json").read_text())["configurations"]
    summary = json.loads((run / "results" / "summary.json").read_text())
    assert summary["counts"]["completed"] == len(index) > 1
    for entry in index:
        assert (run / "results" / entry["config_id"] / "metrics.json").is_file()
    rows = list(csv.DictReader((run / "results" / "summary.csv").open()))
    assert {r["config_id"] for r in rows} == {e["config_id"] for e in index}
    assert all(float(r["mae"]) > 0 for r in rows)
    assert f"[{len(index)}/{len(index)}]" in result.stderr
    provenance = json.loads((run / "run.json").read_text())
    assert provenance["mode"] == "local" and len(provenance["parameters_sha256"]) == 64


def test_a_failing_configuration_does_not_stop_the_others(project):
    path = project / "params" / "parameters.json"
    doc = json.loads(path.read_text())
    names = set(doc.get("fixed", {})) | set(doc.get("grid", {})) | {n for g in doc.get("zip", []) for n in g}
    # An explicit configuration whose window is longer than the series: train.py fails on it.
    first = params_first(project)
    doc.setdefault("configurations", []).append({**{n: first[n] for n in names if n not in doc.get("fixed", {})},
                                                 "window": 100000})
    path.write_text(json.dumps(doc))
    result = mlops(project, "run", "--local", "--jobs", "2")
    assert result.returncode == 1
    run = only_run(project)
    summary = json.loads((run / "results" / "summary.json").read_text())
    failed = [c for c in summary["configurations"] if c["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["parameters"]["window"] == 100000
    assert summary["counts"]["completed"] == len(summary["configurations"]) - 1
    assert "FAIL" in result.stderr and "too short for window=100000" in result.stderr


def params_first(project):
    from mlops import params
    return params.expand(params.validate(project / "params" / "parameters.json"))[0].parameters


def test_bad_parameters_stop_before_anything_is_written(project):
    (project / "params" / "parameters.json").write_text('{"grid": {"window": "24"}}')
    result = mlops(project, "run", "--local")
    assert result.returncode == 2
    assert "$.grid.window: '24' is not of type 'array'" in result.stderr
    assert not (project / "runs").exists()
