"""One configuration trains end to end through the stages' entry points."""

import json
import math

from conftest import run_stage
from mlops import params


def test_one_configuration_trains_and_logs_offline(project_dir):
    run_stage("params", project_dir, {"RUN_ID": "smoke", "WANDB_MODE": "offline"})
    run_stage("data", project_dir)
    first = params.read_index(project_dir / "envs")[0]["config_id"]
    env = params.read_env_file(project_dir / "envs" / f"{first}.env")
    run_stage("model", project_dir, env)
    metrics = json.loads((project_dir / "results" / first / "metrics.json").read_text())
    assert metrics["n_test"] > 0
    for key in ("mae", "rmse", "mase"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0
    assert metrics["rmse"] >= metrics["mae"]
    runs = list((project_dir / "results" / first / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(f"smoke-{first}")


def test_a_bad_configuration_fails_loudly(project_dir):
    run_stage("params", project_dir, {"RUN_ID": "bad"})
    run_stage("data", project_dir)
    first = params.read_index(project_dir / "envs")[0]["config_id"]
    env = {**params.read_env_file(project_dir / "envs" / f"{first}.env"), "WINDOW": "100000"}
    result = run_stage("model", project_dir, env, check=False)
    assert result.returncode != 0 and "too short for window=100000" in result.stderr
    assert not (project_dir / "results" / first / "metrics.json").exists()
