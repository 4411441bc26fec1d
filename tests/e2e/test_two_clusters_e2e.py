"""Issue 21's proof: one project, one build, one commit on two local "clusters" at once.

  cluster a  the module's sshd with PAM key + one-time code + password (auth totp+password, as bwHPC),
             single-node SLURM, rootless podman (support/infra/fixtures.py, with auth overridden here)
  cluster b  a second sshd on another 127.0.0.1 port: key-only login (its own host key and client key,
             both pinned in the project's .gitlab/known_hosts), scheduler = "none" (the sweep runs on the
             login host), runtime charliecloud (converted with ch-convert from b's own podman store),
             its own workdir; the same Unix user. It also OFFERS keyboard-interactive and records every
             answer typed there (support/infra/sshd_recording.py: pam_exec expose_authtok), so whatever
             a client would send it is seen.

The local shape with BOTH clusters' values present: each cluster block names its own key file
(clusters.NAME.ssh_key), and the one environment every command runs in holds cluster a's
HPC_TOTP_SECRET and HPC_PASSWORD, for the `--cluster b` commands too (a user's shell that exported
a's values; in GitLab the scopes hpc/a and hpc/b keep them apart, civars.py). Each launch gets its
own trigger token (a per-cluster variable), as the scoped deploy jobs do.

Flow: `mlops launch --cluster a` and `--cluster b` in one pipeline (CI_PIPELINE_ID 101: run p101 on
both), both sweeps notify the GitLab trigger stand-in; for each notification the test runs what the
triggered job runs (`mlops collect --all-final --cluster NAME --unattended --out results/`); results
sit side by side in results/a/p101 and results/b/p101; `mlops runs` and `mlops compare` show both.
Needs root (it creates the cluster user and daemons).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.infra._util import shared_tmpdir
from support.infra._util import wait_for as infra_wait_for
from support.infra.fixtures import TEST_USER
from support.infra.podman import RootlessPodmanStore
from support.infra.sshd_recording import RecordingKeySshServer
from support.infra.sshd_totp import TotpSshServer
from support.project import build, git_commit, ok, set_toml
from support.render import render

pytestmark = [pytest.mark.timeout(2400)]

PARAMETERS = {"fixed": {"horizon": 24, "test_fraction": 0.2, "seed": 0, "alpha": 1.0}, "grid": {"window": [24, 48]}}
RUN = "p101"  # the pipeline's run on both clusters: p<CI_PIPELINE_ID> (mlops/runid.py)
PROBE = "probe-answer-" + secrets.token_hex(6)  # typed by the test itself: the observation point is live
TOKENS = {"a": "glptt-" + secrets.token_hex(10), "b": "glptt-" + secrets.token_hex(10)}  # per-cluster variable
WAIT_S = 1500  # generous bound on a sweep + its notification (2 shared cores)


@pytest.fixture(scope="module")
def ssh_server(slurm_cluster, rootless_podman):
    """Cluster a's login: key, then "Your OTP:" and "Password:" (overrides the fixtures.py one: a
    password is one more secret of a that b must never see)."""
    env = {**slurm_cluster.ssh_env, **rootless_podman.env}
    with TotpSshServer(user=TEST_USER, auth="totp+password", setenv=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def cluster_b():
    """Cluster b's login (key only, answers recorded), its own workdir and its own podman store (the one
    ch-convert reads: another machine's); no SLURM in its sessions."""
    workdir = shared_tmpdir("mlops-e2e-hpc-b-")
    shutil.chown(workdir, TEST_USER, TEST_USER)
    with RootlessPodmanStore(TEST_USER) as store, RecordingKeySshServer(user=TEST_USER, setenv=store.env) as srv:
        shown = srv.probe(PROBE)
        assert shown and srv.answers() == [PROBE], (shown, srv.answers())
        yield {"server": srv, "workdir": workdir}
    shutil.rmtree(workdir, ignore_errors=True)


def block_b(toml: str, srv, workdir: Path) -> str:
    """A [clusters.b] block: cluster a's block with b's login, workdir, scheduler and runtime."""
    block = re.search(r"^\[clusters\.a\]\n(.*?)(?=^\[)", toml, re.S | re.M).group(1)
    values = {"port": str(srv.port), "workdir": f'"{workdir}"', "auth": '"key"', "ssh_key": f'"{srv.client_key_path}"',
              "runtime": '"charliecloud"', "scheduler": '"none"', "jump_host": '""'}  # fmt: skip
    for key, value in values.items():
        block, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", block, flags=re.M)
        assert n == 1, key
    return "\n[clusters.b]\n" + block


@pytest.fixture(scope="module")
def project(cluster, cluster_b, store_env, gitlab, tmp_path_factory) -> Path:
    srv_a, srv_b = cluster["server"], cluster_b["server"]
    proj = render(tmp_path_factory.mktemp("render"), gitlab_host=gitlab.host, hpc_host=srv_a.host,
                  hpc_port=srv_a.port, hpc_user=srv_a.user, hpc_workdir=str(cluster["workdir"]),
                  hpc_auth="totp+password", scheduler="slurm", container_runtime="podman", cluster_name="a",
                  wandb_mode="offline")  # fmt: skip
    (proj / "params" / "parameters.json").write_text(json.dumps(PARAMETERS, indent=1))
    set_toml(proj, "cluster", "cpus_per_task", "1")  # the single test node: 2 CPUs, 4000 MB
    set_toml(proj, "cluster", "mem", '"300M"')
    set_toml(proj, "cluster", "parallel", "2")
    set_toml(proj, "cluster", "ssh_key", f'"{srv_a.client_key_path}"')
    toml = proj / "mlops.toml"
    toml.write_text(toml.read_text() + block_b(toml.read_text(), srv_b, cluster_b["workdir"]))
    # every cluster's host key, pinned and versioned (the only place mlops reads host keys from)
    (proj / ".gitlab" / "known_hosts").write_text(f"{srv_a.known_hosts_line}\n{srv_b.known_hosts_line}\n")
    ok(run_mlops(proj, "ci", "write"))  # the pipeline's include list: one cluster.yml per cluster
    ok(run_mlops(proj, "config", "check"))  # both blocks pass the template's rules
    git_commit(proj, "two clusters")
    build(proj, store_env)
    return proj


def base_env(project: Path, secrets_a: dict) -> dict:
    """This machine's environment without CI/HPC/W&B variables, plus cluster a's secrets (both shapes
    present: every command, also those for cluster b, runs with them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "HPC_", "MLOPS_", "WANDB_"))}
    return {**env, "PYTHONPATH": str(project / "src"), **secrets_a}


OUTPUTS: list[str] = []  # every mlops output of the module, searched for canaries


def run_mlops(project: Path, *args, env: dict | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = env or base_env(project, {})
    proc = subprocess.run([sys.executable, "-m", "mlops", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    OUTPUTS.append(proc.stdout + proc.stderr)
    return proc


def wait_for(predicate, what: str, timeout: float = WAIT_S):
    """Bounded polling (generous: both sweeps share 2 busy cores): support.infra's, every 2 s."""
    return infra_wait_for(predicate, timeout, what, interval=2)


def triggered_env(env: dict, pipeline: int) -> dict:
    """A pipeline the trigger API started: no trigger token, no run id, its own pipeline id."""
    return {**env, "CI_PIPELINE_SOURCE": "trigger", "CI_PIPELINE_ID": str(pipeline), "CI_PROJECT_ID": "77",
            "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_REF_PROTECTED": "true"}  # fmt: skip


@pytest.fixture(scope="module")
def two_sweeps(project, cluster, cluster_b, gitlab):
    """Launch on a then b (one pipeline), wait for each notification, run each triggered collect."""
    srv_a = cluster["server"]
    secrets_a = {"HPC_TOTP_SECRET": srv_a.totp_secret, "HPC_PASSWORD": srv_a.password}
    env = base_env(project, secrets_a)
    roots = {"a": Path(cluster["workdir"]) / project.name, "b": Path(cluster_b["workdir"]) / project.name}
    t0 = time.monotonic()
    launch = {name: ok(run_mlops(project, "launch", "--cluster", name, env={**env, **gitlab.ci_env(TOKENS[name])}))
              for name in ("a", "b")}  # fmt: skip
    t_launch = time.monotonic() - t0
    notified = {"a": roots["a"] / "runs" / RUN / "state" / "notify.json",
                "b": roots["b"] / "runs" / RUN / "state" / "notify.json"}  # fmt: skip
    collects, order = {}, []
    cluster_of = {token: name for name, token in TOKENS.items()}

    def next_notified():
        arrived = [cluster_of.get(r["form"].get("token"), "?") for r in gitlab.requests]
        return next((n for n in arrived if n not in order), None)

    # the triggered pipelines, in the order the notifications arrive; each starts once its sweep's
    # notification finished (GitLab starts a pipeline well after the POST returned)
    while len(order) < 2:
        name = wait_for(next_notified, "the next notification")
        assert name in ("a", "b"), gitlab.requests
        wait_for(notified[name].exists, f"cluster {name}'s notify.json")
        order.append(name)
        args = ("collect", "--all-final", "--cluster", name, "--unattended", "--out", "results/")
        collects[name] = ok(run_mlops(project, *args, env=triggered_env(env, 200 + len(order))))
    print(f"\nlaunch a+b {t_launch:.1f}s; sweeps + triggered collects {time.monotonic() - t0 - t_launch:.1f}s")
    return {"launch": launch, "collects": collects, "order": order, "roots": roots, "env": env,
            "secrets_a": secrets_a, "requests": list(gitlab.requests)}  # fmt: skip


def test_each_sweep_notifies_once_with_its_own_token_and_no_variables(two_sweeps):
    requests = two_sweeps["requests"]
    assert sorted(r["form"]["token"] for r in requests) == sorted(TOKENS.values()), requests
    for r in requests:
        assert r["path"] == "/api/v4/projects/77/trigger/pipeline"
        assert set(r["form"]) == {"token", "ref"} and r["form"]["ref"] == "main"
    assert sorted(two_sweeps["order"]) == ["a", "b"]


def test_each_cluster_ran_its_own_way(two_sweeps):
    roots = two_sweeps["roots"]
    for name, kind in (("a", "slurm"), ("b", "none")):
        run = json.loads((roots[name] / "runs" / RUN / "run.json").read_text())
        assert run["cluster"] == name and run["mode"] == kind, run
    assert list((roots["a"] / "images").glob("*")), "podman's images on a"
    assert list((roots["b"] / "images").glob("*.ch")), "charliecloud directories on b"
    assert not list((roots["a"] / "images").glob("*.ch")), "nothing of b's runtime on a"


def test_results_of_both_clusters_sit_side_by_side(two_sweeps, project):
    ids = None
    for name in ("a", "b"):
        run = project / "results" / name / RUN
        assert RUN in two_sweeps["collects"][name].stdout + two_sweeps["collects"][name].stderr
        summary = json.loads((run / "summary.json").read_text())
        assert summary["counts"]["completed"] == 2, (name, summary["configurations"], two_sweeps["collects"][name])
        rows = {r["config_id"]: r for r in summary["configurations"]}
        for cid, row in rows.items():
            assert row["status"] == "completed" and {"mae", "rmse"} <= set(row["metrics"]), row
            assert (run / "results" / cid / "metrics.json").is_file()
        assert (run / "junit.xml").is_file() and (run / "sweep.png").is_file()
        ids = ids or set(rows)
        assert set(rows) == ids, "one commit, one grid: the same configurations on both clusters"
        assert (two_sweeps["roots"][name] / "runs" / RUN / "state" / "collected.json").is_file()


def test_runs_and_compare_show_both_clusters(two_sweeps, project):
    env = two_sweeps["env"]
    runs = json.loads(ok(run_mlops(project, "runs", "--json", env=env)).stdout)
    seen = {(r["cluster"], r["run_id"]) for r in runs}
    assert {("a", RUN), ("b", RUN)} <= seen, runs
    doc = json.loads(ok(run_mlops(project, "compare", f"a/{RUN}", f"b/{RUN}", "--json", env=env)).stdout)
    assert doc["a"]["cluster"] == "a" and doc["b"]["cluster"] == "b", doc
    assert doc["a"]["commit"] == doc["b"]["commit"] and doc["a"]["commit"], "one commit ran on both clusters"
    assert len(doc["same"]) == 2 and not doc["only_a"] and not doc["only_b"], doc
    assert all(s["a"] is not None and s["b"] is not None for s in doc["same"]), doc["same"]
    text = ok(run_mlops(project, "compare", f"a/{RUN}", f"b/{RUN}", env=env)).stdout
    assert f"results/a/{RUN}" in text and f"results/b/{RUN}" in text, text


def test_no_secret_of_cluster_a_reaches_cluster_b(two_sweeps, cluster_b, project):
    srv_b = cluster_b["server"]
    canaries = [*two_sweeps["secrets_a"].values(), TOKENS["a"]]
    assert all(canaries)
    # b was asked nothing and typed at nothing: only the test's own probe was ever recorded
    assert srv_b.answers() == [PROBE], srv_b.answers()
    log = srv_b.log_text()
    assert srv_b.count_logins() >= 2, "b was logged in to with its key (launch, collect)"
    assert srv_b.count_failed() == 1 and "Accepted keyboard-interactive" not in log, "only the probe typed there"
    places = [Path(cluster_b["workdir"]), project / "results" / "b"]
    for canary in canaries:
        assert canary not in log
        for place in places:
            for path in place.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    assert canary.encode() not in path.read_bytes(), (path, "holds a secret of cluster a")
    for text in OUTPUTS:  # nothing of a's, and not b's token either, in any output of any command
        for canary in [*canaries, TOKENS["b"]]:
            assert canary not in text
