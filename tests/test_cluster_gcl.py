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
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_cluster_e2e import CodeBook, TriggerStandIn, argv_with

import pipeline_support as ps
from conftest import render
from infra._util import shared_tmpdir
from infra.fixtures import registry, rootless_podman, slurm_cluster, ssh_server  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(
        ps.gcl_version() != ps.GCL_VERSION,
        reason=f"needs gitlab-ci-local {ps.GCL_VERSION} (npm i -g gitlab-ci-local@{ps.GCL_VERSION})",
    ),
    # SWITCHED OFF until it has passed once: written for the one-click pipeline (issues 12/14) on
    # 2026-11-30; its one run stopped before the click (the whole push pipeline failed at
    # secret-scan, on the rendered tests/test_local_sweep.py), since fixed to run only `build`,
    # not re-run by the deadline. Run it with MLOPS_TEST_GCL_CLICK=1 (under flock) and remove
    # this mark when it passes.
    pytest.mark.skipif(
        not os.environ.get("MLOPS_TEST_GCL_CLICK"),
        reason="not yet run once (set MLOPS_TEST_GCL_CLICK=1): see the comment above",
    ),
]

PARAMETERS = {"fixed": {"horizon": 24, "test_fraction": 0.2, "seed": 0, "alpha": 1.0}, "grid": {"window": [24, 48]}}
RUN_ID = "pgcl"


def _yaml_block(text: str) -> str:
    return "|\n" + "".join(f"      {line}\n" for line in text.splitlines())


@pytest.fixture(scope="module")
def pipeline(ssh_server, rootless_podman, registry, tmp_path_factory):
    cache = Path(os.environ.get("MLOPS_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    env = ps.build_env(ps.store_env(cache))
    workdir = shared_tmpdir("mlops-gcl-hpc-")
    shutil.chown(workdir, ssh_server.user, ssh_server.user)
    project = render(
        tmp_path_factory.mktemp("render"),
        hpc_host=ssh_server.host,
        hpc_port=ssh_server.port,
        hpc_user=ssh_server.user,
        hpc_workdir=str(workdir),
        hpc_auth="totp",
        scheduler="slurm",
        container_runtime="podman",
        wandb_mode="offline",
    )
    (project / "params" / "parameters.json").write_text(json.dumps(PARAMETERS))
    toml = (project / "mlops.toml").read_text()
    for old, new in (("cpus_per_task = 2", "cpus_per_task = 1"), ('mem = "4G"', 'mem = "300M"')):
        assert old in toml
        toml = toml.replace(old, new)
    (project / "mlops.toml").write_text(toml)
    ps.git_init(project)
    # The project's CI/CD variables (untracked; gitlab-ci-local reads this file like GitLab's settings).
    known = ssh_server.known_hosts_line + "\n"
    # No stored TOTP secret: the one-time code is typed at the click (HPC_OTP), as a person would.
    (project / ".gitlab-ci-local-variables.yml").write_text(
        "HPC_SSH_PRIVATE_KEY:\n  type: file\n  values:\n    '*': "
        + _yaml_block(ssh_server.client_key_path.read_text())
        + "HPC_KNOWN_HOSTS:\n  type: file\n  values:\n    '*': "
        + _yaml_block(known)
    )
    (project / ".gitlab-ci-local-variables.yml").chmod(0o600)
    yield {
        "project": project,
        "env": env,
        "home": tmp_path_factory.mktemp("gcl-home"),
        "registry": registry,
        "run_dir": workdir / project.name / "runs" / RUN_ID,
        "server": ssh_server,
        "codes": CodeBook(ssh_server.totp_secret),
        "runs": workdir / project.name / "runs",
    }
    shutil.rmtree(workdir, ignore_errors=True)


def gcl(p, *args, **variables):
    """gitlab-ci-local in the project; `variables` are typed/pipeline variables (they override predefined ones)."""
    host = p["registry"].host
    variables = {
        "CI_COMMIT_REF_PROTECTED": "true",
        "MLOPS_RUN_ID": RUN_ID,
        "CI_REGISTRY": host,
        "CI_REGISTRY_IMAGE": f"{host}/group/proj",
        **variables,
    }
    argv = [a for name, value in variables.items() for a in ("--variable", f"{name}={value}")]
    return ps.gcl(p["project"], p["home"], *args, *argv, "--ignore-predefined-vars", ",".join(variables), env=p["env"])


CANARY = "glptt-CANARY" + "a1b2c3" * 3


def typed_code(p) -> str:
    """The code a person types when starting a job: the newest step not used yet (with the server's
    +-1 step window it stays valid 60-90 s, through runner pickup and tool install)."""
    codes = p["codes"]
    for _ in range(3):
        now = int(time.time() // 30)
        for step in (now + 1, now):
            if step not in codes.used:
                codes.used.add(step)
                return codes.totp.at(step * 30)
        time.sleep((now + 1) * 30 - time.time() + 0.5)
    raise AssertionError("no fresh one-time code")


def test_one_click_with_a_typed_code_deploys_submits_and_the_sweep_starts_the_collect_pipeline(pipeline):
    """The click (deploy) with only a typed HPC_OTP: one job, one login, deploy + submit. The sweep's
    notify job calls the stand-in trigger endpoint once; the pipeline GitLab would then start
    (CI_PIPELINE_SOURCE=trigger + the recorded variables) runs only collect-triggered, which
    produces every configuration's artifacts. The canary trigger token appears in no file or log."""
    p = pipeline
    gitlab = TriggerStandIn()
    # the trigger token is a project CI/CD variable (the variables file stands in for GitLab's settings)
    with (p["project"] / ".gitlab-ci-local-variables.yml").open("a") as fh:
        fh.write(f"MLOPS_TRIGGER_TOKEN: {CANARY}\n")
    ci = {
        "CI_API_V4_URL": f"http://127.0.0.1:{gitlab.server_port}/api/v4",
        "CI_PROJECT_ID": "77",
        "CI_COMMIT_REF_NAME": "main",
    }
    # the push's build job (which jobs a push runs is test_pipeline_schema's rules test; the whole push
    # pipeline is not run here: its secret-scan job fails on the rendered tests/test_local_sweep.py today)
    proc = gcl(p, "build", **ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PASS  build" in out, out[-6000:]
    logins = p["server"].count_logins()
    proc = gcl(p, "deploy", HPC_OTP=typed_code(p), **ci)  # the click, with the code typed into it
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PASS  deploy" in out, out[-6000:]
    assert p["server"].count_logins() - logins == 1, "one click, one login"
    assert "submitted params job" in out and "notify job" in out
    report = json.loads((ps.artifacts(p["project"], "deploy") / "deploy" / "report.json").read_text())
    assert all(img["uploaded"] for img in report["images"].values())
    # the sweep runs on SLURM meanwhile; its last job notifies GitLab (bounded wait)
    leaks, deadline = set(), time.monotonic() + 600
    while not gitlab.requests and time.monotonic() < deadline:
        leaks |= argv_with(CANARY)
        time.sleep(0.05)
    time.sleep(2)
    gitlab.shutdown()
    assert len(gitlab.requests) == 1, gitlab.requests
    form = gitlab.requests[0]["form"]
    assert form["token"] == CANARY and form["ref"] == "main" and form["variables[MLOPS_RUN_ID]"] == RUN_ID
    assert not leaks, leaks
    # the pipeline the trigger starts: only collect-triggered runs (no build, no deploy)
    triggered = {
        "CI_PIPELINE_SOURCE": "trigger",
        "HPC_OTP": typed_code(p),
        **{k[len("variables[") : -1]: v for k, v in form.items() if k.startswith("variables[")},
    }
    proc = gcl(p, **triggered)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "PASS  collect-triggered" in out, out[-6000:]
    for job in ("build", "params", "deploy", "secret-scan", "collect", "status"):
        assert f"PASS  {job}" not in out and f"FAIL  {job}" not in out
    assert f"run {RUN_ID}: started by pipeline" in out and "notification sent (HTTP 201)" in out
    results = ps.artifacts(p["project"], "collect-triggered") / "results"
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
    assert (p["run_dir"] / "state" / "collected.json").is_file()
    assert not (p["run_dir"] / "state" / "trigger-token").exists()
    for root in (
        p["run_dir"],
        p["project"] / ".gitlab-ci-local" / "output",
        p["project"] / ".gitlab-ci-local" / "artifacts",
    ):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert CANARY.encode() not in path.read_bytes(), path
    # a trigger for a run that does not exist, or with a malformed id: exit 2, nothing downloaded
    for bad in ("p999999", "../x"):
        proc = gcl(p, CI_PIPELINE_SOURCE="trigger", MLOPS_TRIGGER="collect", MLOPS_RUN_ID=bad, HPC_OTP=typed_code(p))
        out = proc.stdout + proc.stderr
        assert "FAIL  collect-triggered" in out, out[-3000:]
        assert "does not exist" in out or "run id" in out


def mlops_cli(p, *args) -> subprocess.CompletedProcess:
    """The project's own `mlops` from a laptop (the same cluster), with a fresh one-time code."""
    secrets = p["home"] / "laptop"
    secrets.mkdir(exist_ok=True)
    (secrets / "known_hosts").write_text(p["server"].known_hosts_line + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "HPC_", "MLOPS_", "WANDB_"))}
    env.update(
        PYTHONPATH=str(p["project"] / "src"),
        HPC_SSH_PRIVATE_KEY=str(p["server"].client_key_path),
        HPC_KNOWN_HOSTS=str(secrets / "known_hosts"),
        HPC_OTP=p["codes"].next(),
    )
    return subprocess.run(
        [sys.executable, "-m", "mlops", *args],
        cwd=p["project"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_a_schedule_collects_every_final_run_once_and_leaves_a_running_one(pipeline, slurm_cluster):
    """Two finished runs and one still queued: the scheduled pipeline collects and marks the two
    (the run of the click was collected by its trigger already); a second one collects nothing."""
    p = pipeline
    manifest = str(ps.artifacts(p["project"], "build") / "images" / "images.json")
    for run_id in ("s1", "s2"):
        proc = mlops_cli(p, "submit", "--manifest", manifest, "--run-id", run_id)
        assert proc.returncode == 0, proc.stderr
    node = ["scontrol", "update", f"nodename={slurm_cluster.node}"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # s1 and s2 final (both task records), before the node is drained
        states = [
            json.loads(f.read_text()).get("status")
            for r in ("s1", "s2")
            for f in (p["runs"] / r / "state" / "tasks").glob("*.json")
        ]
        if len(states) == 4 and all(s in ("completed", "failed") for s in states):
            break
        time.sleep(2)
    slurm_cluster.run([*node, "state=drain", "reason=e2e-busy"])
    try:
        proc = mlops_cli(p, "submit", "--manifest", manifest, "--run-id", "s3")
        assert proc.returncode == 0, proc.stderr
        proc = gcl(p, CI_PIPELINE_SOURCE="schedule", HPC_OTP=typed_code(p))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "PASS  collect-scheduled" in out, out[-6000:]
        for job in ("build", "deploy", "collect-triggered", "collect"):
            assert f"PASS  {job}" not in out
        assert "collected 2 final run(s): s1, s2" in out, out[-3000:]
        results = ps.artifacts(p["project"], "collect-scheduled") / "results"
        assert sorted(d.name for d in results.iterdir() if d.is_dir()) == ["s1", "s2"]
        for run_id in ("s1", "s2"):
            assert ET.parse(results / run_id / "junit.xml").getroot().get("tests") == "2"
            assert (p["runs"] / run_id / "state" / "collected.json").is_file()
        assert not (p["runs"] / "s3" / "state" / "collected.json").exists()
        proc = gcl(p, CI_PIPELINE_SOURCE="schedule", HPC_OTP=typed_code(p))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "collected 0 final run(s)" in out, out[-3000:]
    finally:
        slurm_cluster.run([*node, "state=resume"])
        mlops_cli(p, "cancel", "--run-id", "s3")
