"""The `mlops` command of a rendered project: exit codes, messages, and nothing half-written on bad input.

(Moved from the rendered project's tests/ in 0.3: the machinery is tested in the template.)
"""

import json
import os
import subprocess
import sys

import pytest

from support.render import render


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One rendered default project for the whole module (nothing here writes into it)."""
    return render(tmp_path_factory.mktemp("cli"))


def mlops(*args, cwd, src):
    env = {**os.environ, "PYTHONPATH": str(src / "src")}
    return subprocess.run([sys.executable, "-m", "mlops", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_validate_reports_the_count(root):
    result = mlops("params", "validate", cwd=root, src=root)
    assert result.returncode == 0 and " configurations" in result.stdout


def test_expand_writes_env_files_and_index(tmp_path, root):
    result = mlops("params", "expand", "--out", str(tmp_path / "envs"), cwd=root, src=root)
    assert result.returncode == 0, result.stderr
    index = json.loads((tmp_path / "envs" / "index.json").read_text())
    assert index["count"] == len(list((tmp_path / "envs").glob("*.env"))) > 0
    env = (tmp_path / "envs" / f"{index['configurations'][0]['config_id']}.env").read_text()
    assert f"DATA_DIR={tmp_path}/data" in env


def test_expand_of_a_bad_file_writes_nothing(tmp_path, root):
    bad = tmp_path / "parameters.json"
    bad.write_text(json.dumps({"grid": {"window": [24, "a b"]}}))
    schema = root / "params" / "parameters.schema.json"
    result = mlops(
        "params", "expand", "--params", str(bad), "--schema", str(schema), "--out", str(tmp_path / "envs"),
        cwd=root, src=root,
    )  # fmt: skip
    assert result.returncode == 2
    assert "$.grid.window[1]: 'a b' has characters an env file cannot carry portably" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parameters.json"]


def test_cap_on_configurations_is_a_clear_error(tmp_path, root):
    doc = {"grid": {"a": list(range(20)), "b": list(range(20))}}
    (tmp_path / "parameters.json").write_text(json.dumps(doc))
    schema = root / "params" / "parameters.schema.json"
    result = mlops(
        "params", "validate", "--params", str(tmp_path / "parameters.json"), "--schema", str(schema), "--max", "100",
        cwd=root, src=root,
    )  # fmt: skip
    assert result.returncode == 2 and "expands to 400 configurations, above the cap of 100" in result.stderr


def test_config_check_names_the_key_to_edit(tmp_path, root):
    (tmp_path / "mlops.toml").write_text((root / "mlops.toml").read_text().replace("port = ", "port = 70000 #", 1))
    result = mlops("config", "check", cwd=tmp_path, src=root)
    assert result.returncode == 2
    assert "mlops.toml: cluster.port (hpc_port): '70000' is not a TCP port" in result.stderr
    assert "ok" in mlops("config", "check", cwd=root, src=root).stdout


def _project_with(root, tmp_path, dotted, value):
    """A copy of this project's mlops.toml with one key changed, pointing at a closed local port."""
    section, key = dotted.split(".")
    lines, current = (root / "mlops.toml").read_text().splitlines(), None
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[]")
        elif current == "cluster" and line.startswith(("host =", "port =")):
            lines[i] = 'host = "127.0.0.1"' if line.startswith("host") else "port = 1"
        if current == section and line.split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
    (tmp_path / "mlops.toml").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "dotted, value, expected",
    [
        ("cluster.workdir", '"scratch/me"', "cluster.workdir (hpc_workdir): 'scratch/me' is not an absolute path"),
        ("cluster.port", '"ssh"', "cluster.port (hpc_port): 'ssh' is not a whole number"),
        ("scheduler.time", '"1h"', "scheduler.time: '1h' is not a SLURM time"),
        ("scheduler.mem", '"4 GB"', "scheduler.mem: '4 GB' is not a SLURM memory size"),
        ("scheduler.time", '"01:00:00\\ntouch /tmp/x"', "scheduler.time: '01:00:00\\ntouch /tmp/x' contains a control"),
    ],
)
@pytest.mark.parametrize("verb", ["deploy", "submit", "status", "collect", "cancel"])
def test_bad_settings_stop_every_cluster_verb_before_a_login(tmp_path, root, verb, dotted, value, expected):
    """Exit 2 with the key and the fix; the host is a closed local port, and no connection is tried:
    a login attempt would say so (connection refused) instead of naming the key."""
    result = mlops(verb, cwd=_project_with(root, tmp_path, dotted, value), src=root)
    assert result.returncode == 2, result.stderr
    assert f"mlops {verb}: mlops.toml: {expected}" in result.stderr and "Fix:" in result.stderr
    assert "Traceback" not in result.stderr and "refused" not in result.stderr.lower()


def test_a_malformed_digest_stops_deploy_before_a_login(tmp_path, root):
    project = _project_with(root, tmp_path, "cluster.user", '"jdoe"')
    manifest = tmp_path / "images.json"
    manifest.write_text(json.dumps({"images": {"model": {"digest": "sha256:zz", "archive": "x.tar"}}}))
    result = mlops("deploy", "--manifest", str(manifest), cwd=project, src=root)
    assert result.returncode == 2, result.stderr
    assert "images.model.digest: 'sha256:zz' is not sha256:<64 hex digits>" in result.stderr
    assert "Traceback" not in result.stderr and "refused" not in result.stderr.lower()
