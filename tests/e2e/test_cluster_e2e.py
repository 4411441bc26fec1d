"""End to end on a real local "cluster": sshd with PAM TOTP, single-node SLURM, rootless podman.

Nothing is faked: the rendered project's own `mlops deploy/submit/status/collect/cancel` log in
with key + one-time code (one login per command), upload the images built by `mlops build`
(buildah), and the sweep runs as SLURM jobs in rootless podman as an unprivileged user.
Faults: a crashing configuration, a wrong code, a changed host key, a code-only change (<= 1 MB,
0 bytes for the other images), a cut blob upload, a corrupt blob in the store, `--failed-only`, cancel;
plus scheduler=none and
charliecloud on the same login node. Needs root (it creates the cluster user and daemons).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support.infra._util import shared_tmpdir, wait_for
from support.infra.fixtures import rootless_podman, slurm_cluster, ssh_server  # noqa: F401 (fixtures)
from support.infra.sshd_totp import exec_command
from support.local_cluster import FAKE_PYTHON36
from support.project import (  # noqa: F401
    CA_BUNDLE,
    TriggerStandIn,
    argv_with,
    build,
    git_commit,
    mlops,
    ok,
    read_wandb_records,
    set_toml,
)
from support.render import render
from support.results_checks import collected_run, metrics_of

pytestmark = [pytest.mark.timeout(2400)]

# 4 configurations with MaxArraySize 3: the model stage must be split into two arrays.
SLURM_MAX_ARRAY_SIZE = 3
PARAMETERS = {
    "fixed": {"horizon": 24, "test_fraction": 0.2, "seed": 0},
    "grid": {"window": [24, 48], "alpha": [0.1, 10.0]},
    "max_configurations": 100,
}
CRASH = (
    "    if WINDOW == 48 and ALPHA == 10.0:  # e2e fault: this configuration crashes\n"
    '        raise RuntimeError("diverged: injected by the e2e test")\n'
)
# e2e fault: in a run whose id starts with "slow-", the window-24 configurations outlive any time limit
SLOW = '    if os.environ.get("RUN_ID", "").startswith("slow-") and WINDOW == 24:\n        time.sleep(900)\n'


@pytest.fixture(scope="module")
def project(cluster, store_env, gitlab, tmp_path_factory) -> Path:
    srv = cluster["server"]
    proj = render(
        tmp_path_factory.mktemp("render"),
        gitlab_host=gitlab.host,
        hpc_host=srv.host,
        hpc_port=srv.port,
        hpc_user=srv.user,
        hpc_workdir=str(cluster["workdir"]),
        hpc_auth="totp",
        scheduler="slurm",
        container_runtime="podman",
        wandb_mode="offline",
    )
    (proj / "params" / "parameters.json").write_text(json.dumps(PARAMETERS, indent=1))
    # the single test node has 2 CPUs and 4000 MB: size the tasks for it
    set_toml(proj, "cluster", "cpus_per_task", "1")
    set_toml(proj, "cluster", "mem", '"300M"')
    set_toml(proj, "cluster", "parallel", "2")
    train = proj / "model" / "train.py"
    text = train.read_text()
    anchor = "def main():\n"
    train.write_text(text.replace(anchor, anchor + CRASH + SLOW, 1))
    git_commit(proj, "e2e project")
    build(proj, store_env)
    return proj


def config_id(**parameters) -> str:
    sys.path.insert(0, str(Path(__file__).parents[2] / "{{cookiecutter.project_slug}}" / "src"))
    from mlops.params import config_id as cid

    return cid({**PARAMETERS["fixed"], **parameters})


CRASHING = {"window": 48, "alpha": 10.0}


# ---------------------------------------------------------------- the main sweep


CANARY = "glptt-CANARY" + "7f3a9c" * 3


@pytest.fixture(scope="module")
def sweep(project, cluster, gitlab, tmp_path_factory):
    """deploy -> submit (with a trigger token: the sweep notifies the stand-in) -> collect --wait,
    with one crashing configuration; process argv sampled for the token while the sweep runs."""
    t0 = time.monotonic()
    deploy = ok(mlops(project, cluster, "deploy", "--report", "deploy.json"))
    t_deploy = time.monotonic() - t0
    submit = ok(mlops(project, cluster, "submit", "--run-id", "p101", env_extra=gitlab.ci_env(CANARY)))
    run_dir = Path(cluster["workdir"]) / project.name / "runs" / "p101"
    leaks, deadline = set(), time.monotonic() + 600
    while not (run_dir / "state" / "notify.json").exists() and time.monotonic() < deadline:
        leaks |= argv_with(CANARY)
        time.sleep(0.05)
    out = tmp_path_factory.mktemp("artifacts") / "results"
    collect = mlops(project, cluster, "collect", "--run-id", "p101", "--out", str(out), "--wait", "600")
    print(f"\ndeploy {t_deploy:.1f}s; sweep+collect {time.monotonic() - t0 - t_deploy:.1f}s")
    return {
        "deploy": deploy,
        "submit": submit,
        "collect": collect,
        "out": out,
        "requests": list(gitlab.requests),
        "leaks": leaks,
        "report": json.loads((project / "deploy.json").read_text()),
        "run_dir": run_dir,
    }


def test_the_finished_sweep_triggers_one_collect_pipeline_and_the_token_leaks_nowhere(sweep, cluster):
    requests = sweep["requests"]
    assert len(requests) == 1, requests
    assert requests[0]["path"] == "/api/v4/projects/77/trigger/pipeline"
    assert requests[0]["form"] == {"token": CANARY, "ref": "main"}, "no variables travel with the notification"
    notify = json.loads((sweep["run_dir"] / "state" / "notify.json").read_text())
    assert notify["status"] == "sent" and notify["http_status"] == 201
    assert not sweep["leaks"], sweep["leaks"]
    assert (sweep["run_dir"] / "state" / "collected.json").is_file(), "a final run is marked when collected"
    assert not (sweep["run_dir"] / "state" / "trigger-token").exists(), "the token is removed when collected"
    for path in [*sweep["run_dir"].rglob("*"), *sweep["out"].rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    for proc in (sweep["submit"], sweep["collect"]):
        assert CANARY not in proc.stdout + proc.stderr
    assert "notify job" in sweep["submit"].stderr
    script = (sweep["run_dir"] / "state" / "jobs" / "notify-1.sbatch").read_text()
    assert "#SBATCH --dependency" not in script and "--data" not in script


def test_deploy_uploads_and_converts_every_image(sweep, project):
    images = json.loads((project / "images" / "images.json").read_text())["images"]
    report = sweep["report"]["images"]
    unique = set()
    for name in ("params", "data", "model"):
        assert report[name]["uploaded"] and report[name]["converted"]
        assert report[name]["digest"] == images[name]["digest"]
        unique |= set(blob_sizes(project, name).items())
    # the three images share their base layers: each blob is sent once
    assert sweep["report"]["bytes_uploaded"] == sum(size for _, size in unique)
    assert sweep["report"]["bytes_uploaded"] < sum(report[n]["size"] for n in ("params", "data", "model"))


def blob_sizes(project: Path, name: str) -> dict[str, int]:
    """hex -> size of every blob of one image in the build's OCI layout."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "{{cookiecutter.project_slug}}" / "src"))
    from mlops.images import layout

    oci = project / "images" / "oci"
    return {b.hex: b.size for b in layout.image_blobs(oci, layout.resolve(oci, name))}


def test_sweep_runs_on_slurm_with_dependencies_and_split_arrays(sweep):
    assert "submitted params job" in sweep["submit"].stderr
    jobs = json.loads((sweep["run_dir"] / "state" / "jobs.json").read_text())
    first = jobs[0]
    assert first["max_array_size"] == SLURM_MAX_ARRAY_SIZE
    assert [c["indices"] for c in first["model"]] == [[0, 1, 2], [3]]
    script = (sweep["run_dir"] / "state" / "jobs" / "model-1-0.sbatch").read_text()
    assert "#SBATCH --array=0-2%2" in script and "#SBATCH --mem=300M" in script


def test_collect_brings_every_result_and_reports(sweep):
    c = sweep["collect"]
    assert c.returncode == 1, c.stderr  # the work ran; one configuration failed
    run = collected_run(sweep["out"], "p101")  # OUT/<cluster>/p101: what came back and the reports
    assert (run / "summary.json").is_file(), c.stderr
    summary = json.loads((run / "summary.json").read_text())
    by_id = {r["config_id"]: r for r in summary["configurations"]}
    assert len(by_id) == 4
    bad = config_id(**CRASHING)
    assert by_id[bad]["status"] == "failed"
    for cid, row in by_id.items():
        if cid != bad:
            assert row["status"] == "completed", row
            assert {"mae", "rmse", "mase"} <= set(row["metrics"])
            assert (run / "results" / cid / "metrics.json").is_file()
    suite = ET.parse(run / "junit.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "1"
    failure = [tc for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert failure[0].get("name").startswith(bad) and "diverged" in failure[0].find("failure").text
    metrics = metrics_of(run)
    assert metrics["configurations_completed"] == "3" and metrics["configurations_failed"] == "1"
    assert float(metrics["mae_min"]) > 0
    assert (run / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.glob("envs/*.env")), "env files stay on the cluster"
    assert metrics["results_links_refused"] == "0", "W&B's own links are expected files, not refused (issue 19)"
    assert int(metrics["results_wandb_links"]) == summary["transfer"]["wandb_links"] > 0


def test_wandb_offline_runs_grouped_tagged_named(sweep, project):
    images = json.loads((project / "images" / "images.json").read_text())["images"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    run = collected_run(sweep["out"], "p101")
    seen = 0
    for cid_dir in (run / "results").iterdir():
        if not cid_dir.is_dir() or cid_dir.name == config_id(**CRASHING):
            continue
        files = list(cid_dir.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(files) == 1, cid_dir
        rec = read_wandb_records(files[0])
        assert rec["group"] == "p101" and rec["name"] == cid_dir.name and rec["run_id"] == f"p101-{cid_dir.name}"
        assert f"commit={commit[:12]}" in rec["tags"]
        assert f"model@{images['model']['digest'][:19]}" in rec["tags"]
        assert rec["config"]["window"] in (24, 48) and rec["config"]["horizon"] == 24
        seen += 1
    assert seen == 3


def test_env_files_and_run_dir_are_private(sweep, cluster):
    run = sweep["run_dir"]
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    envs = list((run / "envs").glob("*.env"))
    assert len(envs) == 4
    for path in [*envs, run / "state" / "stage.env", run / "run.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    text = "".join(p.read_text() for p in envs)
    assert '"' not in text and "'" not in text
    store = Path(cluster["workdir"]) / run.parents[1].name / "images"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700 and stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    for script in (run / "state" / "jobs").iterdir():  # nothing secret in any batch script
        assert "HPC_" not in script.read_text() and "WANDB_API_KEY" not in script.read_text()


@contextlib.contextmanager
def login_node_as_sites_have_it(srv):
    """The cluster account as many sites have it, for the duration of the block: ~/.bashrc echoes
    before its interactive check (quota and module notices), `sbatch` prints a job_submit plugin's
    "sbatch: INFO" line before its --parsable answer and fails once as a busy slurmctld does, and the
    `python3` first on the PATH is a 3.6 that fails on 3.9 code (it logs every call). Yields the dir
    of the wrappers (python3.log: the calls of python3)."""
    wrappers = shared_tmpdir("mlops-e2e-wrap-")
    marker = wrappers / "failed-once"
    (wrappers / "sbatch").write_text(f"""#!/bin/bash
if [ ! -e {marker} ]; then
  touch {marker}
  echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
  exit 1
fi
echo "sbatch: INFO: job routed to partition debug by the site's job_submit plugin"
exec {shutil.which("sbatch")} "$@"
""")
    (wrappers / "python3").write_text(FAKE_PYTHON36)
    for name in ("sbatch", "python3"):
        (wrappers / name).chmod(0o755)
    shutil.chown(wrappers, srv.user, srv.user)
    bashrc = Path(srv.home) / ".bashrc"
    before = bashrc.read_bytes() if bashrc.exists() else None
    bashrc.write_bytes(BASHRC_NOISE + (before or b""))
    old = dict(srv.setenv)
    srv.set_env({**old, "PATH": f"{wrappers}:/usr/local/bin:/usr/bin:/bin"})
    try:
        yield wrappers
    finally:
        srv.set_env(old)
        if before is None:
            bashrc.unlink()
        else:
            bashrc.write_bytes(before)
        shutil.rmtree(wrappers, ignore_errors=True)


BASHRC_NOISE = b'echo "Welcome to the cluster. Quota: 81% of 100 GB used"\necho "module: gcc/12 loaded"\n'


def test_a_login_node_as_sites_have_them(project, cluster, sweep, tmp_path):
    """Issue 18.2-18.4 and 14 on the real local cluster, at once: an echoing ~/.bashrc, sbatch's INFO
    line, a python3 3.6, a transient sbatch failure. Before: status/collect crashed in read_state.py
    (python3 < 3.9), said the run "does not exist" (the noise), and every submission failed "answer was
    not a job id" leaving the created job queued. Now: the first submit fails with "Retry the job" and
    nothing left queued, the retry submits once, status and collect work, python3 is never called."""
    srv = cluster["server"]
    with login_node_as_sites_have_it(srv) as wrappers:
        raw = srv.transport(code=cluster["codes"].next())  # a plain SSH client sees the noise
        try:
            _, said, _ = exec_command(raw, "echo the-answer")
        finally:
            raw.close()
        assert said.startswith("Welcome to the cluster") and said.endswith("the-answer\n"), said
        first = mlops(project, cluster, "submit", "--run-id", "p104")
        assert first.returncode == 1 and "Socket timed out" in first.stderr, first.stderr
        assert "nothing of this attempt is left in the queue" in first.stderr and "Retry the job" in first.stderr
        run_dir = Path(cluster["workdir"]) / project.name / "runs" / "p104"
        assert [a["status"] for a in json.loads((run_dir / "state" / "jobs.json").read_text())] == ["submitting"]
        ok(mlops(project, cluster, "submit", "--run-id", "p104"))  # the GitLab "Retry" of the job
        view = json.loads(ok(mlops(project, cluster, "status", "--run-id", "p104", "--json")).stdout)
        assert view["submitted"] and len(view["configs"]) == 4 and view["cluster"], view
        out = tmp_path / "results"
        mlops(project, cluster, "collect", "--run-id", "p104", "--out", str(out), "--wait", "600")
        assert not (wrappers / "python3.log").exists(), (wrappers / "python3.log").read_text()
    summary = json.loads((collected_run(out, "p104") / "summary.json").read_text())
    assert summary["counts"]["completed"] == 3 and summary["counts"]["failed"] == 1, summary["counts"]
    jobs = json.loads((run_dir / "state" / "jobs.json").read_text())
    assert [(a["attempt"], a["status"]) for a in jobs] == [(1, "submitted")]


# ---------------------------------------------------------------- faults


def test_wrong_code_fails_at_once_with_one_attempt(project, cluster, sweep):
    srv = cluster["server"]
    before = srv.count_auth_attempts()
    t0 = time.monotonic()
    proc = mlops(project, cluster, "status", "--run-id", "p101", code=srv.wrong_otp())
    assert proc.returncode == 2
    assert "refused the one-time code" in proc.stderr and "Not retrying a typed code" in proc.stderr
    assert time.monotonic() - t0 < 30
    time.sleep(0.5)
    assert srv.count_auth_attempts() - before == 1


def test_changed_or_unknown_host_key_is_refused_before_login(project, cluster, sweep, tmp_path):
    srv = cluster["server"]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, b64 = (tmp_path / "other.pub").read_text().split()[:2]
    changed = tmp_path / "changed"
    changed.write_text(f"[{srv.host}]:{srv.port} {kind} {b64}\n")
    unknown = tmp_path / "unknown"
    unknown.write_text(f"[{srv.host}]:1 {kind} {b64}\n")
    before = srv.count_auth_attempts()
    proc = mlops(project, cluster, "status", "--run-id", "p101", code="000000", known_hosts=changed)
    assert proc.returncode == 2 and "does NOT match the one pinned in" in proc.stderr, proc.stderr
    proc = mlops(project, cluster, "status", "--run-id", "p101", code="000000", known_hosts=unknown)
    assert proc.returncode == 2 and "is not in the pinned known_hosts" in proc.stderr, proc.stderr
    assert srv.count_auth_attempts() == before, "no credential may be sent to an unverified host"


@pytest.fixture(scope="module")
def fixed(project, cluster, sweep, store_env):
    """The crash is fixed in model/train.py only: rebuild and deploy (a code-only change); then a cut
    blob upload (the first half of the model's largest layer left as .part, as a killed deploy leaves
    it) and a corrupt blob (the data image's largest layer overwritten in place), and a deploy."""
    train = project / "model" / "train.py"
    train.write_text(train.read_text().replace(CRASH, ""))
    git_commit(project, "fix the crash")
    old = json.loads((project / "images" / "images.json").read_text())["images"]
    new = build(project, store_env)["images"]
    assert new["params"]["digest"] == old["params"]["digest"] and new["model"]["digest"] != old["model"]["digest"]
    # every layer below the code keeps its digest across the two commits
    assert new["model"]["layers"][:-1] == old["model"]["layers"][:-1], (old["model"]["layers"], new["model"]["layers"])
    code_only = ok(mlops(project, cluster, "deploy", "--report", "deploy2.json"))
    report = json.loads((project / "deploy2.json").read_text())
    blobs = Path(cluster["workdir"]) / project.name / "images" / "blobs" / "sha256"
    owner = blobs.stat().st_uid
    shared = {**blob_sizes(project, "params"), **blob_sizes(project, "data")}
    model_hex, model_size = max(
        (kv for kv in blob_sizes(project, "model").items() if kv[0] not in shared), key=lambda kv: kv[1]
    )
    data_hex, data_size = max(
        (kv for kv in blob_sizes(project, "data").items() if kv[0] not in blob_sizes(project, "params")),
        key=lambda kv: kv[1],
    )
    whole = (blobs / model_hex).read_bytes()
    (blobs / model_hex).unlink()
    part = blobs / f"{model_hex}.part"
    part.write_bytes(whole[: len(whole) // 2])
    os.chown(part, owner, owner)
    with open(blobs / data_hex, "r+b") as fh:  # same size, other bytes: only its checksum can tell
        fh.seek(data_size // 2)
        fh.write(b"\0corrupt\0")
    resumed = ok(mlops(project, cluster, "deploy", "--report", "deploy3.json"))
    return {
        "code_only": code_only,
        "report": report,
        "resumed": resumed,
        "blobs": blobs,
        "faults": {
            "model": (model_hex, model_size - len(whole) // 2, len(whole) // 2),
            "data": (data_hex, data_size, 0),
        },
        "report3": json.loads((project / "deploy3.json").read_text()),
    }


def test_code_only_change_uploads_at_most_1_mb_and_nothing_for_params_and_data(fixed):
    images = fixed["report"]["images"]
    assert images["params"]["bytes_uploaded"] == 0 and images["data"]["bytes_uploaded"] == 0
    assert not images["params"]["converted"] and not images["data"]["converted"]
    assert images["model"]["uploaded"] and images["model"]["converted"]
    assert 0 < images["model"]["bytes_uploaded"] <= 1_000_000, images["model"]
    print(
        f"\ncode-only deploy: {fixed['report']['bytes_uploaded']:,} B in {fixed['report']['seconds']}s, "
        f"model converted in {images['model']['convert_seconds']}s"
    )


def test_cut_upload_is_resumed_and_a_corrupt_blob_replaced_by_the_next_deploy(fixed):
    import hashlib

    images = fixed["report3"]["images"]
    model_hex, model_rest, cut = fixed["faults"]["model"]
    data_hex, data_size, _ = fixed["faults"]["data"]
    assert f"resuming at {cut:,}" in fixed["resumed"].stderr
    assert images["model"]["bytes_uploaded"] == model_rest and images["data"]["bytes_uploaded"] == data_size
    assert images["params"]["bytes_uploaded"] == 0
    for hex_ in (model_hex, data_hex):
        assert hashlib.sha256((fixed["blobs"] / hex_).read_bytes()).hexdigest() == hex_
    assert not (fixed["blobs"] / f"{model_hex}.part").exists()


def test_failed_only_completes_the_crashed_configuration(project, cluster, fixed, tmp_path):
    proc = ok(mlops(project, cluster, "submit", "--failed-only", "--run-id", "p101"))
    assert "model array" in proc.stderr and "1 tasks" in proc.stderr, proc.stderr
    out = tmp_path / "results"
    for _ in range(2):  # collecting twice is harmless
        ok(mlops(project, cluster, "collect", "--run-id", "p101", "--out", str(out), "--wait", "600"))
        summary = json.loads((collected_run(out, "p101") / "summary.json").read_text())
        assert summary["counts"]["completed"] == 4, summary["counts"]
    bad = config_id(**CRASHING)
    run = collected_run(out, "p101")
    assert json.loads((run / "state" / "tasks" / f"{bad}.json").read_text())["attempt"] == 2
    assert len(list((run / "results" / bad).glob("wandb/offline-run-*"))) >= 1


def test_cancel_cancels_the_cluster_jobs(project, cluster, fixed, slurm_cluster):
    """A busy cluster (the node drained) keeps the jobs pending while they are cancelled two ways:
    `mlops cancel`, and cancelling a `mlops submit --wait` job (SIGTERM, as when a CI job is cancelled)."""
    node = ["scontrol", "update", f"nodename={slurm_cluster.node}"]
    slurm_cluster.run([*node, "state=drain", "reason=e2e-busy"])
    try:
        ok(mlops(project, cluster, "submit", "--run-id", "p102"))
        ok(mlops(project, cluster, "cancel", "--run-id", "p102"))
        view = json.loads(ok(mlops(project, cluster, "status", "--run-id", "p102", "--json")).stdout)
        assert view["counts"]["cancelled"] == 4, view["counts"]
        jobs = Path(cluster["workdir"]) / project.name / "runs" / "p103" / "state" / "jobs.json"
        proc = mlops(project, cluster, "submit", "--run-id", "p103", "--wait", "600", popen=True)
        deadline = time.monotonic() + 120
        submitted = lambda: jobs.exists() and json.loads(jobs.read_text())[-1]["status"] == "submitted"  # noqa: E731
        while not submitted() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert submitted(), proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 1 and "cancel sent to 4 job(s)" in output, output
        record = json.loads(jobs.read_text())[0]
        for job in [record["params"], record["data"], *(c["job"] for c in record["model"])]:
            states = slurm_cluster.job_states(job)
            assert states and all(s == "CANCELLED" for s in states.values()), (job, states)
    finally:
        slurm_cluster.run([*node, "state=resume"])


# ---------------------------------------------------------------- other runtimes / scheduler


@pytest.mark.parametrize(
    "setting",
    [("cluster", "scheduler", '"none"'), ("cluster", "runtime", '"charliecloud"')],
    ids=["scheduler-none", "charliecloud"],
)
def test_variant_runs_end_to_end(project, cluster, fixed, setting, tmp_path):
    variant = tmp_path / project.name
    shutil.copytree(project, variant, ignore=shutil.ignore_patterns(".mlops", "deploy*.json"))
    set_toml(variant, *setting)
    run_id = f"v-{setting[2].strip(chr(34))}"
    ok(mlops(variant, cluster, "deploy"))
    ok(mlops(variant, cluster, "submit", "--run-id", run_id))
    out = tmp_path / "results"
    ok(mlops(variant, cluster, "collect", "--run-id", run_id, "--out", str(out), "--wait", "600"))
    summary = json.loads((collected_run(out, run_id) / "summary.json").read_text())
    assert summary["counts"]["completed"] == 4, summary


# ---------------------------------------------------------------- SLURM's word (issue 18.5)


def wait_until(predicate, timeout: float, what: str):
    """Poll (bounded, generous: SLURM checks time limits every 30 s or so, a requeued job waits ~2 min)."""
    return wait_for(predicate, timeout, what, interval=2)


def test_a_time_limit_and_a_requeue_are_reported_as_slurm_says(project, cluster, fixed, slurm_cluster, tmp_path):
    """A run with `time = "2"` (two minutes) whose two window-24 configurations sleep 15 minutes (the run
    id starts with "slow-"): one of them is requeued (and held) by `scontrol requeuehold` while it runs. While it waits
    in the queue again, status says requeued, the run is not final: `collect --all-final` does not
    collect or mark it, `collect --require-final` refuses it. In the end SLURM ends both at their time
    limit: status says timeout with the fix (raise `time`), and collect --all-final collects the run.
    Before: the wrapper's TERM trap recorded "cancelled 143", which won over SLURM's TIMEOUT, and the
    requeued task read as final, so the run was collected and marked before it ran again."""
    variant = tmp_path / project.name
    shutil.copytree(project, variant, ignore=shutil.ignore_patterns(".mlops", "deploy*.json"))
    # two minutes: the window-48 configurations must finish well inside it on a busy 2-core machine
    set_toml(variant, "cluster", "time", '"2"')  # the same images: deployed by `fixed` already
    ok(mlops(variant, cluster, "submit", "--run-id", "slow-1"))
    run_dir = Path(cluster["workdir"]) / project.name / "runs" / "slow-1"
    # 4 configurations, MaxArraySize 3: two model arrays (0-2 and 3), each must end before the checks
    model_jobs = [chunk["job"] for chunk in json.loads((run_dir / "state" / "jobs.json").read_text())[0]["model"]]
    assert len(model_jobs) == 2, model_jobs

    def slow_running():  # config id -> task record of the window-24 configurations that run now
        index = json.loads((run_dir / "envs" / "index.json").read_text())["configurations"]
        slow_ids = {c["config_id"] for c in index if c["parameters"]["window"] == 24}
        found = {p.stem: json.loads(p.read_text()) for p in (run_dir / "state" / "tasks").glob("*.json")}
        return {c: r for c, r in found.items() if c in slow_ids and r.get("status") == "running"}

    slow = wait_until(lambda: len(slow_running()) == 2 and slow_running(), 600, "both slow tasks to run")
    cid = sorted(slow)[0]
    requeued = slow[cid]["job"]  # "<array job>_<task id>"
    # requeue and hold: the task waits in the queue until it is released (a plain requeue waits ~2 min,
    # which the assertions below must not depend on)
    slurm_cluster.run(["scontrol", "requeuehold", requeued])
    array_job = requeued.split("_")[0]
    wait_until(lambda: slurm_cluster.job_states(array_job).get(requeued) == "PENDING", 120, "the requeued task to wait")
    view = json.loads(ok(mlops(variant, cluster, "status", "--run-id", "slow-1", "--json")).stdout)
    assert view["configs"][cid]["status"] == "requeued", view["configs"]
    out = tmp_path / "early"
    early = ok(mlops(variant, cluster, "collect", "--all-final", "--out", str(out)))
    (collected,) = out.glob("*/collected.txt")  # results/<cluster>/collected.txt (contract E)
    assert "slow-1" not in collected.read_text(), early.stderr
    assert not (run_dir / "state" / "collected.json").exists(), "a run with a requeued task is not final"
    refused = mlops(variant, cluster, "collect", "--run-id", "slow-1", "--require-final", "--out", str(out))
    assert refused.returncode == 2 and "not final" in refused.stderr and "requeued" in refused.stderr, refused.stderr
    slurm_cluster.run(["scontrol", "release", requeued])

    final = {"TIMEOUT", "COMPLETED", "FAILED", "CANCELLED"}

    def ended() -> bool:  # a job SLURM has forgotten (MinJobAge after its end) has no states left: ended too
        return all(set(slurm_cluster.job_states(job).values()) <= final for job in model_jobs)

    wait_until(ended, 900, "the sweep's end (both arrays)")
    status = ok(mlops(variant, cluster, "status", "--run-id", "slow-1"))
    view = json.loads(ok(mlops(variant, cluster, "status", "--run-id", "slow-1", "--json")).stdout)
    states = {c: (v["status"], v.get("exit_code")) for c, v in view["configs"].items()}
    assert view["counts"]["timeout"] == 2 and view["counts"]["completed"] == 2, (states, status.stdout)
    assert "2 timeout: the task hit its time limit: raise `time`" in status.stdout, status.stdout
    record = json.loads((run_dir / "state" / "tasks" / f"{cid}.json").read_text())
    assert record["status"] == "timeout" and record["restarts"] == 1, record
    out = tmp_path / "final"
    ok(mlops(variant, cluster, "collect", "--all-final", "--out", str(out)))
    (collected,) = out.glob("*/collected.txt")
    assert "slow-1" in collected.read_text().split()
    assert (run_dir / "state" / "collected.json").is_file()
    summary = json.loads((collected_run(out, "slow-1") / "summary.json").read_text())
    assert summary["counts"]["timeout"] == 2 and summary["counts"]["completed"] == 2, summary["counts"]
