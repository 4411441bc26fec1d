"""The `mlops` command: exit codes, messages, and nothing half-written on bad input."""

import json
import subprocess
import sys

from conftest import ROOT


def mlops(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mlops", *args], cwd=cwd, capture_output=True, text=True)


def test_validate_reports_the_count():
    result = mlops("params", "validate")
    assert result.returncode == 0 and " configurations" in result.stdout


def test_expand_writes_env_files_and_index(tmp_path):
    result = mlops("params", "expand", "--out", str(tmp_path / "envs"))
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "envs" / "index.json").read_text())
    assert index["count"] == len(list((tmp_path / "envs").glob("*.env"))) > 0
    env = (tmp_path / "envs" / f"{index['configurations'][0]['config_id']}.env").read_text()
    assert f"DATA_DIR={tmp_path}/data" in env


def test_expand_of_a_bad_file_writes_nothing(tmp_path):
    bad = tmp_path / "parameters.json"
    bad.write_text(json.dumps({"grid": {"window": [24, "a b"]}}))
    schema = ROOT / "params" / "parameters.schema.json"
    result = mlops("params", "expand", "--params", str(bad), "--schema", str(schema), "--out", str(tmp_path / "envs"))
    assert result.returncode == 2
    assert "$.grid.window[1]: 'a b' has characters an env file cannot carry portably" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parameters.json"]


def test_cap_on_configurations_is_a_clear_error(tmp_path):
    doc = {"grid": {"a": list(range(20)), "b": list(range(20))}}
    (tmp_path / "parameters.json").write_text(json.dumps(doc))
    schema = ROOT / "params" / "parameters.schema.json"
    result = mlops(
        "params", "validate", "--params", str(tmp_path / "parameters.json"), "--schema", str(schema), "--max", "100"
    )
    assert result.returncode == 2 and "expands to 400 configurations, above the cap of 100" in result.stderr


def test_config_check_names_the_key_to_edit(tmp_path):
    (tmp_path / "mlops.toml").write_text((ROOT / "mlops.toml").read_text().replace("port = ", "port = 70000 #", 1))
    result = mlops("config", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "mlops.toml: cluster.port (hpc_port): '70000' is not a TCP port" in result.stderr
    assert "ok" in mlops("config", "check").stdout
