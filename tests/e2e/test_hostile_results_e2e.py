"""Issue 11 end to end: `mlops collect` over the real sshd (key + one-time code) of a run directory
that hostile student code filled on the cluster side (tests/hostile_results.py, written as the
cluster user). `scheduler: none`: collect needs no SLURM, and the state files are hostile too.

Asserted: nothing outside OUT/<run-id>/ is created or changed (a canary file beside OUT, no new
.pth in the interpreter's site-packages); the runner's private key and the canary secrets appear
in no artifact and not in the log; every well-formed configuration is in junit.xml, the summary and
the plot, each bad one with its reason; junit.xml parses, summary.json is strict JSON, metrics.txt
has GitLab's format; the exit code is 1 (not everything came back). Needs root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import good_run
from support import hostile_results as hostile
from support.infra._util import shared_tmpdir
from support.infra.sshd_totp import TotpSshServer
from support.render import render
from support.results_checks import CANARY_ENV, assert_reports_safe, check_rows, collected_run, file_tree, pth_files

pytestmark = [pytest.mark.timeout(900)]
USER = "mlopshpc"


@pytest.fixture(scope="module")
def server():
    with TotpSshServer(user=USER, auth="totp") as srv:
        yield srv


@pytest.fixture(scope="module")
def hostile_cluster(server, tmp_path_factory):
    """A rendered project (scheduler none) and its run p666 on the cluster, made hostile by the cluster user."""
    workdir = shared_tmpdir("mlops-hostile-hpc-")
    shutil.chown(workdir, USER, USER)
    project = render(
        tmp_path_factory.mktemp("render"),
        hpc_host=server.host,
        hpc_port=server.port,
        hpc_user=USER,
        hpc_workdir=str(workdir),
        hpc_auth="totp",
        scheduler="none",
        container_runtime="podman",
        wandb_mode="offline",
    )
    script = workdir / "hostile_results.py"
    shutil.copy(Path(hostile.__file__), script)
    site_packages = next(p for p in map(Path, __import__("site").getsitepackages()) if p.is_dir())
    run = workdir / project.name / "runs" / "p666"
    subprocess.run(
        [
            "runuser",
            "-u",
            USER,
            "--",
            "/usr/bin/python3",
            str(script),
            str(run),
            str(server.client_key_path),
            str(site_packages),
        ],
        check=True,
        timeout=120,
    )
    yield {"project": project, "run": run, "workdir": workdir}
    shutil.rmtree(workdir, ignore_errors=True)


def test_collect_of_a_hostile_run_over_ssh(server, hostile_cluster, tmp_path):
    project = hostile_cluster["project"]
    job = tmp_path / "job"  # the CI job's directory: OUT and a canary beside it
    job.mkdir()
    beside = job / "canary.txt"
    beside.write_text("canary\n")
    before = (beside.stat().st_mtime_ns, pth_files())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "HPC_", "MLOPS_RUN", "WANDB_"))}
    # HPC_OTP must be a real code to log in; HPC_TOTP_SECRET is a canary (HPC_OTP wins, so it is unused).
    env.update(
        {
            **CANARY_ENV,
            "PYTHONPATH": str(project / "src"),
            "HPC_SSH_PRIVATE_KEY": str(server.client_key_path),
            "HPC_OTP": server.otp(),
        }
    )
    server.write_known_hosts(project / ".gitlab" / "known_hosts")  # the project's pinned host keys
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mlops", "collect", "--run-id", "p666", "--out", str(job / "results")],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    print(f"\ncollect of the hostile run over SSH: exit {proc.returncode} in {seconds:.1f}s\n{log[-6000:]}")
    assert proc.returncode == 1, log
    out = collected_run(job / "results", "p666")  # results/<cluster>/p666: what came back and the reports
    assert (beside.stat().st_mtime_ns, pth_files()) == before
    assert sorted(p.name for p in job.iterdir()) == ["canary.txt", "results"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["metrics.txt", "p666"]
    assert {"junit.xml", "metrics.txt", "summary.csv", "summary.json", "sweep.png"} <= {p.name for p in out.iterdir()}
    tree = file_tree(out, reports=("junit.xml", "metrics.txt", "summary.csv", "summary.json", "sweep.png"))
    assert "envs/index.json" in tree and not any(name.endswith(".env") for name in tree)
    key_body = [line for line in server.client_key_path.read_text().splitlines() if "PRIVATE KEY" not in line]
    secrets = [v for k, v in CANARY_ENV.items() if k != "HPC_OTP"] + key_body
    assert_reports_safe(out, secrets)
    for s in secrets:
        assert s not in log
    import json

    summary = json.loads((out / "summary.json").read_text())
    check_rows(summary["configurations"], summary["problems"])
    lost = "\n".join(summary["problems"])
    assert "bomb.ckpt" in lost and "not sent by the cluster" in lost and "envs/index.json entry" in lost
    refused = {s["name"] for s in summary["refused"]}
    assert "results/a000000001/a/x" in refused and "results/a000000001/abs-secret" in refused
    assert "best 3 by mae" in log and "not completed or bad" in log and f"plot: {out / 'sweep.png'}" in log


def test_a_full_disk_on_the_runner_is_reported_as_local_over_ssh(server, hostile_cluster, tmp_path):
    """Issue 18.8 through the real Session: the artifacts directory is a 1 MiB tmpfs and the run sends
    3 MiB that do not compress. Before, the write error inside the session's read loop was reported as
    "the connection ... was lost"; now it is a local error naming the directory and the fix."""
    project, workdir = hostile_cluster["project"], hostile_cluster["workdir"]
    script = workdir / "good_run.py"
    shutil.copy(Path(good_run.__file__), script)
    run = workdir / project.name / "runs" / "p777"
    subprocess.run(["runuser", "-u", USER, "--", "/usr/bin/python3", str(script), str(run), str(3 << 20)],
                   check=True, timeout=120)  # fmt: skip
    job = tmp_path / "job"
    out = job / "results"
    out.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(out)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        server.write_known_hosts(project / ".gitlab" / "known_hosts")  # the project's pinned host keys
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "HPC_", "MLOPS_RUN", "WANDB_"))}
        env.update({"PYTHONPATH": str(project / "src"), "HPC_SSH_PRIVATE_KEY": str(server.client_key_path),
                    "HPC_OTP": server.otp()})  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "mlops", "collect", "--run-id", "p777", "--out", str(out)],
            cwd=project, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log = proc.stdout + proc.stderr
        print(f"\ncollect onto a 1 MiB tmpfs: exit {proc.returncode}\n{log[-2000:]}")
        assert proc.returncode == 1, log
        assert "no space left on the runner at" in log and "Fix:" in log and "connection" not in log, log
        assert "Traceback" not in log
        assert [p.name for p in out.iterdir()] == [next(out.iterdir()).name]  # only results/<cluster>/
        assert list(next(out.iterdir()).iterdir()) == [], "nothing half-written is left"
    finally:
        subprocess.run(["umount", str(out)], check=True)
