"""The rendered pipeline drives the cluster: gitlab-ci-local runs build -> deploy (manual) -> run -> collect.

The same real local cluster as test_cluster_e2e.py (sshd + PAM TOTP, SLURM, rootless podman on
127.0.0.1). The CI variables are what a project would store: the key and known_hosts as FILE
variables, the TOTP secret as a variable (so each job computes its own code, after a fresh 30 s step,
because the server refuses a code twice). Needs root and gitlab-ci-local.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import pipeline_support as ps
from conftest import render
from infra._util import shared_tmpdir
from infra.fixtures import registry, rootless_podman, slurm_cluster, ssh_server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400),
              pytest.mark.skipif(ps.gcl_version() != ps.GCL_VERSION,
                                 reason=f"needs gitlab-ci-local {ps.GCL_VERSION} (npm i -g gitlab-ci-local@{ps.GCL_VERSION})")]

PARAMETERS = {"fixed": {"horizon": 24, "test_fraction": 0.2, "seed": 0, "alpha": 1.0},
              "grid": {"window": [24, 48]}}
RUN_ID = "pgcl"


def _yaml_block(text: str) -> str:
    return "|\n" + "".join(f"      {line}\n" for line in text.splitlines())


@pytest.fixture(scope="module")
def pipeline(ssh_server, rootless_podman, registry, tmp_path_factory):
    cache = Path(os.environ.get("MLOPS_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    env = ps.build_env(ps.store_env(cache))
    workdir = shared_tmpdir("mlops-gcl-hpc-")
    shutil.chown(workdir, ssh_server.user, ssh_server.user)
    project = render(tmp_path_factory.mktemp("render"), hpc_host=ssh_server.host, hpc_port=ssh_server.port,
                     hpc_user=ssh_server.user, hpc_workdir=str(workdir), hpc_auth="totp", scheduler="slurm",
                     container_runtime="podman", wandb_mode="offline")
    (project / "params" / "parameters.json").write_text(json.dumps(PARAMETERS))
    toml = (project / "mlops.toml").read_text()
    for old, new in (("cpus_per_task = 2", "cpus_per_task = 1"), ('mem = "4G"', 'mem = "300M"')):
        assert old in toml
        toml = toml.replace(old, new)
    (project / "mlops.toml").write_text(toml)
    ps.git_init(project)
    # The project's CI/CD variables (untracked; gitlab-ci-local reads this file like GitLab's settings).
    known = ssh_server.known_hosts_line + "\n"
    (project / ".gitlab-ci-local-variables.yml").write_text(
        "HPC_SSH_PRIVATE_KEY:\n  type: file\n  values:\n    '*': " + _yaml_block(ssh_server.client_key_path.read_text())
        + "HPC_KNOWN_HOSTS:\n  type: file\n  values:\n    '*': " + _yaml_block(known)
        + f"HPC_TOTP_SECRET: {ssh_server.totp_secret}\n")
    (project / ".gitlab-ci-local-variables.yml").chmod(0o600)
    yield {"project": project, "env": env, "home": tmp_path_factory.mktemp("gcl-home"), "registry": registry,
           "run_dir": workdir / project.name / "runs" / RUN_ID, "server": ssh_server}
    shutil.rmtree(workdir, ignore_errors=True)


def gcl(p, *args):
    host = p["registry"].host
    return ps.gcl(p["project"], p["home"], *args, "--variable", "CI_COMMIT_REF_PROTECTED=true",
                  "--variable", f"MLOPS_RUN_ID={RUN_ID}", "--variable", f"CI_REGISTRY={host}",
                  "--variable", f"CI_REGISTRY_IMAGE={host}/group/proj",
                  "--ignore-predefined-vars", "CI_COMMIT_REF_PROTECTED,CI_REGISTRY,CI_REGISTRY_IMAGE", env=p["env"])


def test_build_deploy_run_collect_through_the_pipeline(pipeline):
    p = pipeline
    logins = p["server"].count_logins()
    proc = gcl(p, "--manual", "deploy")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for job in ("build", "deploy", "run"):
        assert f"PASS  {job}" in out, f"{job} did not pass:\n{out[-6000:]}"
    assert "PASS  collect" not in out, "collect is manual"
    assert p["server"].count_logins() - logins == 2, "one login per cluster job"
    report = json.loads((ps.artifacts(p["project"], "deploy") / "deploy" / "report.json").read_text())
    assert all(img["uploaded"] for img in report["images"].values())
    # the sweep runs on SLURM meanwhile; wait (bounded) for both task records to be final
    tasks = p["run_dir"] / "state" / "tasks"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = [json.loads(f.read_text()).get("status") for f in tasks.glob("*.json")] if tasks.exists() else []
        if len(states) == 2 and all(s in ("completed", "failed") for s in states):
            break
        time.sleep(2)
    proc = gcl(p, "collect")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PASS  collect" in out, out[-6000:]
    results = ps.artifacts(p["project"], "collect") / "results"
    suite = ET.parse(results / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert (results / "metrics.txt").read_text().startswith("configurations_pending 0\n")
    summary = json.loads((results / "summary.json").read_text())
    assert summary["counts"]["completed"] == 2
    for row in summary["configurations"]:
        assert (results / RUN_ID / "results" / row["config_id"] / "metrics.json").is_file()
        assert list((results / RUN_ID / "results" / row["config_id"]).glob("wandb/offline-run-*"))
    run_json = json.loads((results / RUN_ID / "run.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=p["project"], capture_output=True, text=True)
    assert run_json["commit"] == head.stdout.strip() and run_json["run_id"] == RUN_ID
