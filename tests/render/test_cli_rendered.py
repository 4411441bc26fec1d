"""The `mlops` command of a rendered project: exit codes, messages, and nothing half-written on bad input.

(Moved from the rendered project's tests/ in 0.3: the machinery is tested in the template. ROOT is a
project rendered with the default answers, once for the module; the tests below are as they were.)
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.render import render

ROOT = Path()  # set by the module fixture below


@pytest.fixture(scope="module", autouse=True)
def rendered_root(tmp_path_factory):
    global ROOT
    ROOT = render(tmp_path_factory.mktemp("cli"))
    return ROOT


def mlops(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "mlops", *args], cwd=cwd or ROOT, capture_output=True, text=True, env=env
    )


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


def _block() -> str:
    """`clusters.NAME`: this project's cluster block in mlops.toml (the one the template wrote)."""
    return next(line.strip("[]") for line in (ROOT / "mlops.toml").read_text().splitlines()
                if line.startswith("[clusters."))  # fmt: skip


def test_config_check_names_the_key_to_edit(tmp_path):
    (tmp_path / "mlops.toml").write_text((ROOT / "mlops.toml").read_text().replace("port = ", "port = 70000 #", 1))
    result = mlops("config", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert f"mlops.toml: {_block()}.port (hpc_port): '70000' is not a TCP port" in result.stderr
    assert "ok" in mlops("config", "check").stdout


def _project_with(tmp_path, key, value):
    """A copy of this project's mlops.toml with one key of the cluster block changed, pointing at a
    closed local port."""
    lines, current = (ROOT / "mlops.toml").read_text().splitlines(), None
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == _block() and line.startswith(("host =", "port =")):
            lines[i] = 'host = "127.0.0.1"' if line.startswith("host") else "port = 1"
        if current == _block() and line.split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
    (tmp_path / "mlops.toml").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("workdir", '"scratch/me"', "workdir (hpc_workdir): 'scratch/me' is not an absolute path"),
        ("port", '"ssh"', "port (hpc_port): 'ssh' is not a whole number"),
        ("time", '"1h"', "time: '1h' is not a SLURM time"),
        ("mem", '"4 GB"', "mem: '4 GB' is not a SLURM memory size"),
        ("time", '"01:00:00\\ntouch /tmp/x"', "time: '01:00:00\\ntouch /tmp/x' contains a control"),
    ],
)
@pytest.mark.parametrize("verb", ["deploy", "submit", "status", "collect", "cancel"])
def test_bad_settings_stop_every_cluster_verb_before_a_login(tmp_path, verb, key, value, expected):
    """Exit 2 with the key and the fix; the host is a closed local port, and no connection is tried:
    a login attempt would say so (connection refused) instead of naming the key."""
    result = mlops(verb, cwd=_project_with(tmp_path, key, value))
    assert result.returncode == 2, result.stderr
    assert f"mlops {verb}: mlops.toml: {_block()}.{expected}" in result.stderr and "Fix:" in result.stderr
    assert "Traceback" not in result.stderr and "refused" not in result.stderr.lower()


def test_a_malformed_digest_stops_deploy_before_a_login(tmp_path):
    project = _project_with(tmp_path, "user", '"jdoe"')
    manifest = tmp_path / "images.json"
    manifest.write_text(json.dumps({"images": {"model": {"digest": "sha256:zz", "archive": "x.tar"}}}))
    result = mlops("deploy", "--manifest", str(manifest), cwd=project)
    assert result.returncode == 2, result.stderr
    assert "images.model.digest: 'sha256:zz' is not sha256:<64 hex digits>" in result.stderr
    assert "Traceback" not in result.stderr and "refused" not in result.stderr.lower()
