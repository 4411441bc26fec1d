"""Helpers to run a rendered project's GitLab pipeline for real with gitlab-ci-local (shell executor).

Shared by tests/test_pipeline*.py and benchmarks/bench_rebuild.py. What stands in for GitLab:
  - the runner: gitlab-ci-local 4.73.0, --force-shell-executor --shell-isolation (each job in its
    own build dir; artifacts and the cache really move between jobs), all state in the project's
    temp dir (--state-dir) and a temp --home;
  - the job image: this machine's python3 (the jobs make their venv with --system-site-packages,
    and PIP_NO_INDEX proves they need nothing from PyPI beyond what the test machine has);
  - the container registry: tests/infra/registry.py on 127.0.0.1 (CI_REGISTRY/CI_REGISTRY_IMAGE);
  - the builder's storage: one private containers store under $MLOPS_TEST_CACHE, shared with the
    e2e tier, with the debootstrap base image (Docker Hub is unreachable here).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from .infra import baseimage

GCL = "gitlab-ci-local"
GCL_VERSION = "4.73.0"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
GIT = ["git", "-c", "user.email=ci@example.org", "-c", "user.name=CI"]


def gcl_version() -> str | None:
    try:
        return subprocess.run([GCL, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def store_env(cache_root: Path) -> dict:
    """The private containers store with the local base image in it (built once per cache root)."""
    env = baseimage.private_store(cache_root / "containers")
    baseimage.import_base_image(env, baseimage.DEFAULT_IMAGE, cache_dir=cache_root / "base-rootfs")
    return env


def build_env(store: dict) -> dict:
    """Environment for gitlab-ci-local: the store, the local base image and the machine-only knobs."""
    env = {
        **store,
        "MLOPS_BASE_IMAGE": baseimage.DEFAULT_IMAGE,
        # Offline job venvs: whatever the jobs install must already be on the test machine.
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if HOST_CA_BUNDLE.is_file():
        # THIS machine intercepts TLS to PyPI: trust its CA inside the builds, for the build only
        # (a volume is not part of the image). The generic knob, documented in the README.
        env["MLOPS_BUILD_EXTRA_ARGS"] = f"-v {HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"
    return env


def git_init(project: Path) -> str:
    """gitlab-ci-local only hands git-tracked files to jobs: commit everything; returns the sha."""
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run(
        ["git", "remote", "add", "origin", "https://gitlab.example.com/group/proj.git"], cwd=project, check=True
    )
    return git_commit(project, "initial")


def git_commit(project: Path, message: str) -> str:
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-q", "--allow-empty", "-m", message], cwd=project, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()


def gcl(
    project: Path,
    home: Path,
    *args: str,
    env: dict | None = None,
    registry_host: str | None = None,
    timeout: float = 1800,
) -> subprocess.CompletedProcess:
    """Run gitlab-ci-local in `project` with all its state inside `project` and `home`."""
    argv = [
        GCL,
        "--force-shell-executor",
        "--shell-isolation",
        "--home",
        str(home),
        "--state-dir",
        ".gitlab-ci-local",
        "--concurrency",
        "1",
        "--no-color",
        "--max-job-name-padding",
        "0",
    ]
    if registry_host:
        argv += [
            "--variable",
            f"CI_REGISTRY={registry_host}",
            "--variable",
            f"CI_REGISTRY_IMAGE={registry_host}/group/proj",
            "--ignore-predefined-vars",
            "CI_REGISTRY,CI_REGISTRY_IMAGE",
        ]
    return subprocess.run(
        [*argv, *args], cwd=project, env=env or os.environ.copy(), capture_output=True, text=True, timeout=timeout
    )


def list_jobs(project: Path, home: Path, *variables: str) -> dict[str, dict]:
    """`gitlab-ci-local --list-json` as name -> job (the JSON follows some log lines)."""
    args = ["--list-json"]
    for v in variables:
        args += ["--variable", v]
    names = ",".join(v.split("=", 1)[0] for v in variables)
    if names:
        args += ["--ignore-predefined-vars", names]
    proc = subprocess.run(
        [GCL, "--home", str(home), "--no-color", *args], cwd=project, capture_output=True, text=True, timeout=300
    )
    match = re.search(r"^\[$", proc.stdout, re.MULTILINE)
    assert proc.returncode == 0 and match, f"--list-json failed:\n{proc.stdout}\n{proc.stderr}"
    return {job["name"]: job for job in json.loads(proc.stdout[match.start() :])}


def artifacts(project: Path, job: str) -> Path:
    return project / ".gitlab-ci-local" / "artifacts" / job


def run_pipeline(project: Path, home: Path, env: dict, registry_host: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = gcl(project, home, env=env, registry_host=registry_host)
    return proc, time.monotonic() - t0


def manifest(project: Path) -> dict:
    return json.loads((artifacts(project, "build") / "images" / "images.json").read_text())
