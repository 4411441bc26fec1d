"""The local "cluster" the cluster benchmarks run on, from the test fixtures' real parts.

sshd with PAM TOTP (key + one-time code), a single-node SLURM 22.05 and rootless podman for the
cluster user, exactly as the e2e tier uses them (the helpers come from tests/support/project.py: one
implementation of render/build/login). Started by the benchmark, stopped at its end (by PID).
Needs root, like the e2e tier.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "tests"))

from support import project as e2e  # noqa: E402  (build, git_commit, set_toml, mlops)
from support.infra._util import shared_tmpdir  # noqa: E402
from support.infra.baseimage import DEFAULT_IMAGE, build_base_rootfs, import_base_image, private_store  # noqa: E402
from support.infra.fixtures import TEST_USER  # noqa: E402
from support.infra.podman import RootlessPodmanStore  # noqa: E402
from support.infra.slurm import LocalSlurm  # noqa: E402
from support.infra.sshd_totp import CodeBook, TotpSshServer  # noqa: E402
from support.render import render  # noqa: E402


def load_text() -> str:
    try:
        return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "load unknown"


@contextlib.contextmanager
def local_cluster(max_array_size: int = 1001):
    """Yields a dict like the e2e `cluster` fixture (server, workdir, known_hosts, codes) plus slurm,
    podman and store_env (the private build store; $MLOPS_TEST_CACHE's when set, so the layer cache of
    earlier tiers is reused)."""
    if os.geteuid() != 0:
        raise SystemExit("the cluster benchmarks start sshd, SLURM and a cluster user: run them as root")
    keep = os.environ.get("MLOPS_TEST_CACHE")
    cache = Path(keep) if keep else Path(shared_tmpdir("mlops-bench-cache-"))
    store_env = private_store(cache / "containers")
    import_base_image(store_env, DEFAULT_IMAGE, rootfs=build_base_rootfs(cache / "base-rootfs"))
    work = shared_tmpdir("mlops-bench-")
    try:
        with LocalSlurm(max_array_size=max_array_size) as slurm, RootlessPodmanStore(TEST_USER) as podman:
            with TotpSshServer(user=TEST_USER, auth="totp", setenv={**slurm.ssh_env, **podman.env}) as srv:
                workdir = work / "hpc"
                workdir.mkdir()
                shutil.chown(workdir, srv.user, srv.user)
                secrets = work / "secrets"
                secrets.mkdir(mode=0o700)
                known = secrets / "known_hosts"
                srv.write_known_hosts(known)
                yield {
                    "server": srv,
                    "workdir": workdir,
                    "known_hosts": known,
                    "codes": CodeBook(srv.totp_secret),
                    "slurm": slurm,
                    "podman": podman,
                    "store_env": store_env,
                    "work": work,
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not keep:
            subprocess.run(["buildah", "rm", "--all"], env={**os.environ, **store_env}, capture_output=True)
            subprocess.run(["buildah", "rmi", "--all", "--force"], env={**os.environ, **store_env}, capture_output=True)
            shutil.rmtree(cache, ignore_errors=True)


@contextlib.contextmanager
def quiet():
    """Send this process's (and its children's) stdout/stderr to /dev/null for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def project(cluster: dict, parameters: dict, parallel: int = 2, model_files: dict | None = None) -> Path:
    """A rendered project pointed at the local cluster (podman, SLURM), sized for the one 2-CPU node."""
    srv = cluster["server"]
    with quiet():  # the post-generation hook's credential check speaks to a person, not to this table
        proj = render(
            cluster["work"] / f"render-{time.monotonic_ns()}",
            hpc_host=srv.host,
            hpc_port=srv.port,
            hpc_user=srv.user,
            hpc_workdir=str(cluster["workdir"]),
            hpc_auth="totp",
            scheduler="slurm",
            container_runtime="podman",
            wandb_mode="offline",
        )
    (proj / "params" / "parameters.json").write_text(json.dumps(parameters, indent=1))
    e2e.set_toml(proj, "cluster", "cpus_per_task", "1")
    e2e.set_toml(proj, "cluster", "mem", '"300M"')
    e2e.set_toml(proj, "cluster", "parallel", str(parallel))
    for name, text in (model_files or {}).items():
        (proj / "model" / name).write_text(text)
    e2e.git_commit(proj, "benchmark project")
    return proj


def mlops(proj: Path, cluster: dict, *args, timeout: float = 1800) -> tuple[subprocess.CompletedProcess, float]:
    """One `mlops` command (one login); the one-time code is taken BEFORE the clock starts, so
    waiting for a fresh code (DISALLOW_REUSE) is not counted. Returns (process, seconds)."""
    code = cluster["codes"].next()
    t0 = time.perf_counter()
    proc = e2e.mlops(proj, cluster, *args, code=code, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"mlops {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, seconds


def build(proj: Path, cluster: dict, *images: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    manifest = e2e.build(proj, cluster["store_env"], *images)
    return manifest, time.perf_counter() - t0


def wait_gone(slurm: LocalSlurm, job_ids: list[str], timeout: float, interval: float = 0.2) -> float:
    """Poll squeue (bounded) until every task of the jobs is in a final state; returns that moment
    (time.time()). A task is final once SLURM has finished it, its cleanup (COMPLETING) included."""
    from support.infra.slurm import TERMINAL

    deadline = time.monotonic() + timeout
    ids = ",".join(job_ids)
    while time.monotonic() < deadline:
        out = slurm.run(["squeue", "-h", "-t", "all", "-j", ids, "-o", "%i %T"], check=False)
        states = [line.split()[1] for line in out.stdout.splitlines() if len(line.split()) == 2]
        if out.returncode == 0 and states and all(s in TERMINAL for s in states):
            return time.time()
        time.sleep(interval)
    raise RuntimeError(
        f"jobs {ids} not finished after {timeout:.0f}s: " + slurm.run(["squeue"], check=False).stdout[-2000:]
    )
