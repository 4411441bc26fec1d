"""Canary secrets: render, commit and run what runs here with a random canary in every secret, then
look for the canaries everywhere they could leak.

Covered here: the rendered tree, git history (every object), the cookiecutter replay dir, the answers
(mlops.toml; .cruft.json when cruft renders), the hook's temp files ($TMPDIR), the gitlab-ci-local job
logs and artifacts of the jobs that run without a cluster (validate stage incl. secret-scan, with the
secrets given to every job), and the command lines of every process sampled while they ran.
The cluster side (sbatch scripts, remote files, deploy/run command lines) is covered by the e2e tier's
own checks (tests/test_cluster_e2e.py::test_env_files_and_run_dir_are_private), not repeated here.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from support import pipeline as ps
from support.render import render

GIT = ["git", "-c", "user.email=ci@example.org", "-c", "user.name=CI"]


def canaries(tmp: Path) -> tuple[dict, dict]:
    """(environment with a canary in every secret, {label: canary string to search for})."""
    keys = tmp / "keys"
    keys.mkdir()
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    (keys / "id").write_bytes(pem)
    (keys / "id").chmod(0o600)
    (keys / "id.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n"
    )
    env = {
        "HPC_SSH_PRIVATE_KEY": str(keys / "id"),
        "HPC_TOTP_SECRET": base64.b32encode(secrets.token_bytes(20)).decode(),
        "WANDB_API_KEY": secrets.token_hex(20),
        "GITLAB_TOKEN": "glpat-" + secrets.token_hex(12),
        "HPC_OTP": f"{secrets.randbelow(10**8):08d}",
        "HPC_PASSWORD": "pw-" + secrets.token_hex(12),
        "MLOPS_TRIGGER_TOKEN": "glptt-" + secrets.token_hex(20),
    }
    body = "".join(pem.decode().splitlines()[1:-1])
    marks = {
        "ssh key": body[40:80],
        "totp": env["HPC_TOTP_SECRET"],
        "wandb": env["WANDB_API_KEY"],
        "gitlab": env["GITLAB_TOKEN"],
        "otp": env["HPC_OTP"],
        "password": env["HPC_PASSWORD"],
        "trigger token": env["MLOPS_TRIGGER_TOKEN"],
    }
    return env, marks


def scan(root: Path, marks: dict, skip=()) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink() or any(path.is_relative_to(s) for s in skip):
            continue
        data = path.read_bytes()
        hits += [f"{label} in {path}" for label, mark in marks.items() if mark.encode() in data]
    return hits


class CmdlineSampler(threading.Thread):
    """Reads /proc/*/cmdline every 20 ms (what `ps` shows other users) until stopped."""

    def __init__(self, marks: dict):
        super().__init__(daemon=True)
        self.marks, self.hits, self.samples, self._halt = marks, [], 0, threading.Event()

    def run(self):
        while not self._halt.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    self.hits += [
                        f"{label} in argv of pid {pid}" for label, m in self.marks.items() if m.encode() in cmd
                    ]
            self.samples += 1
            time.sleep(0.02)

    def stop(self):
        self._halt.set()
        self.join(10)


@pytest.mark.skipif(
    shutil.which("gitlab-ci-local") is None, reason="gitlab-ci-local is not installed (.ci/run installs it)"
)
def test_no_canary_leaks_from_render_commit_and_pipeline(tmp_path, monkeypatch):
    env, marks = canaries(tmp_path)
    hook_tmp = tmp_path / "tmpdir"
    hook_tmp.mkdir()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TMPDIR", str(hook_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(hook_tmp))  # cookiecutter runs in this process
    sampler = CmdlineSampler(marks)
    sampler.start()
    index = None
    try:
        out = tmp_path / "out"
        project = render(out, hpc_ssh_key=env["HPC_SSH_PRIVATE_KEY"])
        # the tool job (params and config need it) downloads the locked wheels from an index on 127.0.0.1
        cache = Path(os.environ.get("MLOPS_TEST_CACHE") or tmp_path / "cache")
        index = ps.LocalIndex(ps.locked_wheels(project, cache)).__enter__()
        ps.use_index(project, index.url)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
        subprocess.run(
            ["git", "remote", "add", "origin", "https://gitlab.example.com/group/proj.git"], cwd=project, check=True
        )
        subprocess.run(["git", "add", "-A"], cwd=project, check=True)
        subprocess.run([*GIT, "commit", "-qm", "rendered"], cwd=project, check=True)

        run_env = {
            **os.environ,
            "PYTHONPATH": str(project / "src"),
            "PIP_NO_INDEX": "1",
            # offline job venvs as in tests/pipeline_support.py (pip's inverted flag: "0" = no isolation)
            "PIP_NO_BUILD_ISOLATION": "0",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
        local = subprocess.run(
            [sys.executable, "-m", "mlops", "variables", "local"],
            cwd=project,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert local.returncode == 0, local.stderr
        variables_file = project / ".gitlab-ci-local-variables.yml"
        assert marks["totp"] in variables_file.read_text()  # the canary really reached the jobs' input
        assert variables_file.stat().st_mode & 0o077 == 0
        gcl = subprocess.run(
            [
                "gitlab-ci-local",
                "--force-shell-executor",
                "--shell-isolation",
                "--home",
                str(tmp_path / "gcl-home"),
                "secret-scan",
                "tool",
                "config",
                "params",
            ],
            cwd=project,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert gcl.returncode == 0, gcl.stdout[-3000:] + gcl.stderr[-2000:]
        assert "PASS  secret-scan" in gcl.stdout
    finally:
        sampler.stop()
        if index is not None:
            index.__exit__(None, None, None)

    history = subprocess.run(
        ["git", "log", "-p", "--all", "--format=%H %s"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    tracked = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True).stdout.split()
    assert ".gitlab-ci-local-variables.yml" not in tracked
    hits = [f"{label} in git history" for label, m in marks.items() if m in history]
    hits += [f"{label} in gitlab-ci-local output" for label, m in marks.items() if m in gcl.stdout + gcl.stderr]
    hits += [f"{label} in mlops output" for label, m in marks.items() if m in local.stdout + local.stderr]
    # Everything on disk: tree, .git, replay dir, job logs and artifacts, hook temp files. Excluded: the
    # 0600 variables file that holds them on purpose, and gitlab-ci-local's copies of FILE variables
    # (the runner's temp files: GitLab does the same, see README "Security model").
    skip = [variables_file, project / ".gitlab-ci-local" / "tmp"]
    hits += scan(out, marks, skip=skip) + scan(hook_tmp, marks)
    hits += sampler.hits
    assert sampler.samples > 10, "the command-line sampler did not run"
    assert (out / ".cookiecutter-home" / "replay").is_dir()
    assert (project / ".gitlab-ci-local").is_dir()
    assert not hits, "\n".join(sorted(set(hits)))
