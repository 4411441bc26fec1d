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

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


# ------------------------------------------------------------------ the tool job's package index

LOCKS = ("click", "collect")  # .gitlab/ci/lock/<name>.txt of a rendered project


def locked_wheels(project: Path, cache_root: Path) -> Path:
    """Every wheel the rendered project's lock files pin, downloaded once (from PyPI, with the test
    machine's pip settings) into `cache_root/tool-wheels` and checked against the locks' hashes."""
    dest = cache_root / "tool-wheels"
    dest.mkdir(parents=True, exist_ok=True)
    for name in LOCKS:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "--only-binary", ":all:"]
            + ["--no-deps", "--dest", str(dest), "--requirement", str(project / ".gitlab/ci/lock" / f"{name}.txt")],
            check=True,
            capture_output=True,
            timeout=1800,
        )
    return dest


class LocalIndex:
    """A PEP 503 "simple" index of `wheels` on 127.0.0.1 (the tool job's index_url in the tests), with
    every request recorded (path, headers, body) in `requests`. Use as a context manager."""

    def __init__(self, wheels: Path, extra: dict[str, Path] | None = None):
        self.wheels, self.requests = Path(wheels), []
        files: dict[str, list[Path]] = {}
        for path in [*self.wheels.glob("*.whl"), *(extra or {}).values()]:
            files.setdefault(_project_name(path.name), []).append(path)
        self.files = files
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> LocalIndex:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet; the test reads `requests`
                pass

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                index.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
                )
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                body, ctype = None, "text/html"
                if len(parts) == 2 and parts[0] == "simple":
                    links = "".join(
                        f'<a href="/files/{p.name}#sha256={_sha256(p)}">{p.name}</a>\n'
                        for p in index.files.get(_normalize(parts[1]), [])
                    )
                    body = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
                elif len(parts) == 2 and parts[0] == "files":
                    match = [p for ps in index.files.values() for p in ps if p.name == parts[1]]
                    if match:
                        body, ctype = match[0].read_bytes(), "application/octet-stream"
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_CONNECT = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return self.base + "/simple"

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_name(filename: str) -> str:
    return _normalize(filename.split("-", 1)[0])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def use_index(project: Path, url: str) -> None:
    """Point the rendered project's tool job at `url` (its index_url input in .gitlab-ci.yml)."""
    ci = project / ".gitlab-ci.yml"
    text, n = re.subn(r"(?m)^(\s+index_url: )\S+", lambda m: m.group(1) + url, ci.read_text())
    assert n == 1, "no index_url input in .gitlab-ci.yml"
    ci.write_text(text)
