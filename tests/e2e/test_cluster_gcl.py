"""Issues 12 and 14 under gitlab-ci-local: the push's secret-scan + build, the click (deploy = `mlops launch`:
deploy + submit over one login with a typed HPC_OTP), the sweep's notification, the triggered pipeline
(only collect-triggered) and the scheduled one (collect-scheduled of every final run, once).

The same real local cluster as test_cluster_e2e.py (sshd + PAM TOTP, SLURM, rootless podman on
127.0.0.1), shared by the whole module (one render, one build, one click). The CI variables are what a
project would store: the key as a FILE variable (host keys in the committed .gitlab/known_hosts), the trigger
token; no TOTP secret: each
cluster job gets a code typed at its start (the CodeBook's next step: valid >= 60 s, never reused).
Needs root and gitlab-ci-local.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support import pipeline as ps
from support.infra._util import shared_tmpdir
from support.infra.fixtures import registry, rootless_podman, slurm_cluster, ssh_server  # noqa: F401 (fixtures)
from support.infra.sshd_totp import CodeBook
from support.project import TriggerStandIn, argv_with
from support.render import render
from support.results_checks import collected_run, metrics_of

pytestmark = [
    pytest.mark.timeout(2400),
    pytest.mark.skipif(
        ps.gcl_version() != ps.GCL_VERSION,
        reason=f"needs gitlab-ci-local {ps.GCL_VERSION} (npm i -g gitlab-ci-local@{ps.GCL_VERSION})",
    ),
]

PARAMETERS = {"fixed": {"horizon": 24, "test_fraction": 0.2, "seed": 0, "alpha": 1.0}, "grid": {"window": [24, 48]}}
CLUSTER = "uni"  # [clusters.uni]: its jobs are deploy-uni, collect-triggered-uni, ...
RUN_ID = "p4242"  # the click's pipeline: mlops takes p<CI_PIPELINE_ID> (mlops.runid)


def _yaml_block(text: str) -> str:
    return "|\n" + "".join(f"      {line}\n" for line in text.splitlines())


@pytest.fixture(scope="module")
def pipeline(ssh_server, rootless_podman, registry, tmp_path_factory):
    cache = Path(os.environ.get("MLOPS_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    env = ps.build_env(ps.store_env(cache))
    workdir = shared_tmpdir("mlops-gcl-hpc-")
    shutil.chown(workdir, ssh_server.user, ssh_server.user)
    gitlab = TriggerStandIn()  # GitLab's trigger endpoint: project.gitlab_host (plain http on loopback)
    project = render(
        tmp_path_factory.mktemp("render"),
        gitlab_host=gitlab.host,
        hpc_host=ssh_server.host,
        hpc_port=ssh_server.port,
        hpc_user=ssh_server.user,
        hpc_workdir=str(workdir),
        hpc_auth="totp",
        cluster_name=CLUSTER,
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
    # gitlab-ci-local 4.73 with --shell-isolation runs an after_script in a build dir synced afresh from
    # git (the job's files are gone), then saves the artifacts from it: deploy's cancel-only after_script
    # would lose deploy/ and state/. GitLab runs after_script in the job's own dir; cancelling is not run here.
    cluster_yml = project / ".gitlab" / "ci" / "cluster.yml"
    after = (
        '  after_script:\n    - if [ "$CI_JOB_STATUS" = "canceled" ]; then . .gitlab/ci/job.sh click cancel '
        "--cluster $[[ inputs.cluster ]]; fi\n"
    )
    assert cluster_yml.read_text().count(after) == 1
    cluster_yml.write_text(cluster_yml.read_text().replace(after, ""))
    (project / ".gitlab" / "known_hosts").write_text(ssh_server.known_hosts_line + "\n")  # committed, reviewed
    # the tool job downloads the locked wheels from a package index on 127.0.0.1 (PyPI's files, hash-checked)
    index = ps.LocalIndex(ps.locked_wheels(project, cache)).__enter__()
    ps.use_index(project, index.url)
    ps.git_init(project)
    # The project's CI/CD variables (untracked; gitlab-ci-local reads this file like GitLab's settings).
    # No stored TOTP secret: the one-time code is typed at the click (HPC_OTP), as a person would.
    (project / ".gitlab-ci-local-variables.yml").write_text(
        "HPC_SSH_PRIVATE_KEY:\n  type: file\n  values:\n    '*': " + _yaml_block(ssh_server.client_key_path.read_text())
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
        "gitlab": gitlab,
    }
    gitlab.shutdown()
    gitlab.server_close()
    index.__exit__(None, None, None)
    shutil.rmtree(workdir, ignore_errors=True)


def gcl(p, *args, **variables):
    """gitlab-ci-local in the project; `variables` are typed/pipeline variables (they override predefined ones)."""
    host = p["registry"].host
    variables = {
        "CI_COMMIT_REF_PROTECTED": "true",
        "CI_PIPELINE_ID": RUN_ID[1:],
        "CI_REGISTRY": host,
        "CI_REGISTRY_IMAGE": f"{host}/group/proj",
        **variables,
    }
    argv = [a for name, value in variables.items() for a in ("--variable", f"{name}={value}")]
    return ps.gcl(p["project"], p["home"], *args, *argv, "--ignore-predefined-vars", ",".join(variables), env=p["env"])


def ran(out: str) -> set[str]:
    """The jobs a gitlab-ci-local pipeline ran (its " PASS  <job>" / " FAIL  <job>" summary lines)."""
    return set(re.findall(r"^ *(?:PASS|FAIL|WARN) +(\S+)", out, re.MULTILINE))


CANARY = "glptt-CANARY" + "a1b2c3" * 3


def stored_secret(p) -> dict:
    """What a triggered or scheduled pipeline logs in with: nobody types a code there (collect
    --unattended skips a cluster without it), so the project stores HPC_TOTP_SECRET (scope hpc/NAME).
    Waits until the codes the test typed (future steps) are past: a person types the current step's code,
    which the product's retry steps over, but typed future steps could catch both of its codes."""
    p["codes"].wait_past_handed_out()
    return {"HPC_TOTP_SECRET": p["server"].totp_secret}


def typed_code(p) -> str:
    """The code a person types when starting a job: the CodeBook's next-step code (with the server's
    +-1 step window it stays valid at least 60 s, through runner pickup and tool install)."""
    return p["codes"].next(ahead=True)


@pytest.fixture(scope="module")
def click(pipeline):
    """The push pipeline's secret-scan and build jobs, then the click (deploy) with only a typed
    HPC_OTP, then the sweep on SLURM until its notify job has called the stand-in trigger endpoint;
    process argv sampled for the canary trigger token meanwhile."""
    p = pipeline
    gitlab = p["gitlab"]
    # the trigger token is a project CI/CD variable (the variables file stands in for GitLab's settings)
    with (p["project"] / ".gitlab-ci-local-variables.yml").open("a") as fh:
        fh.write(f"MLOPS_TRIGGER_TOKEN: {CANARY}\n")
    ci = {"CI_PROJECT_ID": "77", "CI_COMMIT_REF_NAME": "main"}
    # the push's jobs the click needs, and secret-scan over every tracked file of the rendered project
    # (which jobs a push runs is test_pipeline_schema's rules test; the whole push pipeline is test_pipeline's)
    t0 = time.monotonic()
    push = gcl(p, "secret-scan", "tool", "build", **ci)
    logins = p["server"].count_logins()
    deploy = gcl(p, f"deploy-{CLUSTER}", HPC_OTP=typed_code(p), **ci)  # the click, with the code typed into it
    logins = p["server"].count_logins() - logins
    # the sweep runs on SLURM meanwhile; its last job notifies GitLab (bounded wait)
    leaks, deadline = set(), time.monotonic() + 600
    while deploy.returncode == 0 and not gitlab.requests and time.monotonic() < deadline:
        leaks |= argv_with(CANARY)
        time.sleep(0.05)
    time.sleep(2)  # a second request (there must be none) would arrive now
    print(f"\npush jobs + click + sweep: {time.monotonic() - t0:.1f}s")
    return {"push": push, "deploy": deploy, "logins": logins, "requests": gitlab.requests, "leaks": leaks}


def test_the_push_pipeline_passes_secret_scan_and_builds(click):
    out = click["push"].stdout + click["push"].stderr
    assert click["push"].returncode == 0 and "PASS  secret-scan" in out and "PASS  build" in out, out[-6000:]


def test_one_click_with_a_typed_code_deploys_and_submits_with_one_login_and_the_sweep_notifies_once(pipeline, click):
    """The click (deploy) with only a typed HPC_OTP: one job, one login, deploy + submit. The sweep's
    notify job calls the stand-in trigger endpoint once, with the run id; the canary token is in no argv."""
    p = pipeline
    out = click["deploy"].stdout + click["deploy"].stderr
    assert click["deploy"].returncode == 0 and f"PASS  deploy-{CLUSTER}" in out, out[-6000:]
    assert click["logins"] == 1, "one click, one login"
    assert "submitted params job" in out and "notify job" in out, out[-3000:]
    deployed = ps.artifacts(p["project"], f"deploy-{CLUSTER}")
    assert (deployed / "deploy" / "report.json").is_file(), sorted(map(str, deployed.parent.rglob("*")))[:50]
    report = json.loads((deployed / "deploy" / "report.json").read_text())
    built = ps.manifest(p["project"])["images"]
    assert {s: i["digest"] for s, i in report["images"].items()} == {s: i["digest"] for s, i in built.items()}
    assert report["bytes_uploaded"] > 0
    assert len(click["requests"]) == 1, click["requests"]
    assert click["requests"][0]["form"] == {"token": CANARY, "ref": "main"}, "no variables (contract E)"
    assert not click["leaks"], click["leaks"]


def test_the_triggered_pipeline_runs_only_collect_triggered_with_every_configurations_results(pipeline, click):
    """The pipeline GitLab starts for the recorded trigger (CI_PIPELINE_SOURCE=trigger, no variables)
    runs only collect-triggered, which collects every final run the cluster's state lists (the click's)
    with every configuration's artifacts and reports; the canary trigger token is in no file of the
    run or of the pipelines; a second trigger finds nothing left to collect."""
    p = pipeline
    assert len(click["requests"]) == 1, click["requests"]
    proc = gcl(p, CI_PIPELINE_SOURCE="trigger", **stored_secret(p))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"PASS  collect-triggered-{CLUSTER}" in out, out[-6000:]
    assert ran(out) == {"tool", f"collect-triggered-{CLUSTER}"}, out[-3000:]
    assert f"run {RUN_ID} on cluster {CLUSTER}: started by pipeline" in out, out[-3000:]
    assert "notification sent (HTTP 201)" in out, out[-3000:]
    run = collected_run(ps.artifacts(p["project"], f"collect-triggered-{CLUSTER}") / "results", RUN_ID)
    suite = ET.parse(run / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert metrics_of(run)["configurations_pending"] == "0"
    assert (run.parent / "metrics.txt").read_text() == (run / "metrics.txt").read_text()  # reports:metrics
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"]["completed"] == 2
    for row in summary["configurations"]:
        assert (run / "results" / row["config_id"] / "metrics.json").is_file()
        assert list((run / "results" / row["config_id"]).glob("wandb/offline-run-*"))
    run_json = json.loads((run / "run.json").read_text())
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
    # a second trigger (a run id in a pipeline variable changes nothing): nothing final is left to collect
    proc = gcl(p, CI_PIPELINE_SOURCE="trigger", MLOPS_RUN_ID="p999999", **stored_secret(p))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "collected 0 final run(s)" in out, out[-3000:]


def mlops_cli(p, *args) -> subprocess.CompletedProcess:
    """The project's own `mlops` from a laptop (the same cluster), with a fresh one-time code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "HPC_", "MLOPS_", "WANDB_"))}
    env.update(
        PYTHONPATH=str(p["project"] / "src"),
        HPC_SSH_PRIVATE_KEY=str(p["server"].client_key_path),
        # the next step's code: the pipeline's own logins (HPC_TOTP_SECRET) take the current step, and the
        # server refuses a step twice (DISALLOW_REUSE), so the current one may be spent already
        HPC_OTP=p["codes"].next(ahead=True),
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
        proc = gcl(p, CI_PIPELINE_SOURCE="schedule", **stored_secret(p))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and f"PASS  collect-scheduled-{CLUSTER}" in out, out[-6000:]
        assert ran(out) == {"tool", f"collect-scheduled-{CLUSTER}", "template-check"}, out[-3000:]
        assert "collected 2 final run(s): s1, s2" in out, out[-3000:]
        results = ps.artifacts(p["project"], f"collect-scheduled-{CLUSTER}") / "results"
        (cluster_dir,) = [d for d in results.iterdir() if d.is_dir()]  # results/<cluster>/<run id> (contract E)
        assert sorted(d.name for d in cluster_dir.iterdir() if d.is_dir()) == ["s1", "s2"]
        for run_id in ("s1", "s2"):
            assert ET.parse(cluster_dir / run_id / "junit.xml").getroot().get("tests") == "2"
            assert (p["runs"] / run_id / "state" / "collected.json").is_file()
        assert not (p["runs"] / "s3" / "state" / "collected.json").exists()
        proc = gcl(p, CI_PIPELINE_SOURCE="schedule", **stored_secret(p))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "collected 0 final run(s)" in out, out[-3000:]
    finally:
        slurm_cluster.run([*node, "state=resume"])
        mlops_cli(p, "cancel", "--run-id", "s3")
