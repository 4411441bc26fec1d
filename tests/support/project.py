"""Drive a rendered project's own `mlops` against the real local cluster (e2e, gcl, benchmarks).

mlops(project, cluster, *args)   the project's mlops in a subprocess with the cluster credentials
pin_host_keys(project, path)     the project's .gitlab/known_hosts := the file at `path` (what a user commits)
ok(proc)                         assert exit 0, with both streams in the failure
build(project, store_env)        mlops build --no-push into the private container store
git_commit / set_toml            the user's commit and an edit of one mlops.toml key
read_wandb_records(path)         config/group/tags/name/id of an offline W&B run file
TriggerStandIn                   GitLab's pipeline trigger endpoint on 127.0.0.1 (records requests)
argv_with(text)                  process command lines that contain `text` (secrets never on argv)
"""

from __future__ import annotations

import http.server
import json
import os
import struct
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

from .infra.baseimage import DEFAULT_IMAGE

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def pin_host_keys(project: Path, known_hosts) -> None:
    """Write the lines of the known_hosts file `known_hosts` to the project's .gitlab/known_hosts (the only
    place mlops reads host keys from), as a user does before committing it."""
    pinned = project / ".gitlab" / "known_hosts"
    pinned.parent.mkdir(parents=True, exist_ok=True)
    pinned.write_bytes(Path(known_hosts).read_bytes())


def mlops(
    project: Path,
    cluster: dict,
    *args,
    code: str | None = None,
    known_hosts=None,
    timeout=900,
    env_extra=None,
    popen=False,
):
    pin_host_keys(project, known_hosts or cluster["known_hosts"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "HPC_", "MLOPS_RUN", "WANDB_"))}
    env.update(
        {
            "PYTHONPATH": str(project / "src"),
            "HPC_SSH_PRIVATE_KEY": str(cluster["server"].client_key_path),
            "HPC_OTP": code if code is not None else cluster["codes"].next(),
            **(env_extra or {}),
        }
    )
    argv = [sys.executable, "-m", "mlops", *args]
    if popen:
        return subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(
        argv, cwd=project, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def ok(proc) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def build(project: Path, store_env: dict, *images: str) -> dict:
    env = {
        **store_env,
        "PYTHONPATH": str(project / "src"),
        "MLOPS_BASE_IMAGE": DEFAULT_IMAGE,
        # this machine intercepts TLS: lend the host CA bundle to pip for the build only
        "MLOPS_BUILD_EXTRA_ARGS": f"-v {CA_BUNDLE}:{CA_BUNDLE}:ro",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mlops", "build", "--no-push", *images],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((project / "images" / "images.json").read_text())


def git_commit(project: Path, message: str):
    git = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.org"]
    if not (project / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", message], cwd=project, check=True)


def set_toml(project: Path, section: str, key: str, value: str):
    """Edit one key of mlops.toml (the user's settings file) in place; section "cluster" is the first
    [clusters.NAME] block (the one the template wrote)."""
    path = project / "mlops.toml"
    lines, current = path.read_text().splitlines(), None
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip("[] ")
            if section == "cluster" and current.startswith("clusters."):
                current = "cluster"
        elif current == section and line.split("=")[0].strip() == key:
            lines[i] = f"{key} = {value}"
            break
    else:
        raise AssertionError(f"{section}.{key} not in mlops.toml")
    path.write_text("\n".join(lines) + "\n")


def read_wandb_records(path: Path) -> dict:
    """config, group, tags, name and id of an offline run from its run-<id>.wandb file
    (LevelDB-log framing around wandb_internal_pb2.Record)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, found, pos = path.read_bytes(), {}, 7
    block, chunks = 32768, b""
    while pos + 7 <= len(data):
        if block - (pos % block) < 7:
            pos += block - (pos % block)
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            try:
                rec.ParseFromString(chunks)
            except Exception:
                chunks = b""
                continue
            chunks = b""
            if rec.HasField("run"):
                r = rec.run
                found.update(
                    run_id=r.run_id,
                    group=r.run_group,
                    tags=list(r.tags),
                    name=r.display_name,
                    project=r.project,
                    config={i.key: json.loads(i.value_json) for i in r.config.update},
                )
        elif length == 0 and kind == 0:
            break
    return found


class TriggerStandIn(http.server.ThreadingHTTPServer):
    """GitLab's pipeline trigger endpoint on 127.0.0.1: records each request as GitLab receives it."""

    def __init__(self, status: int = 201):
        self.requests, self.status = [], status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N805
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0))).decode()
                self.requests.append({"path": handler.path, "form": dict(urllib.parse.parse_qsl(body))})
                handler.send_response(self.status)
                handler.send_header("Content-Type", "application/json")
                handler.end_headers()
                handler.wfile.write(b'{"id": 4711}' if self.status == 201 else b'{"message": "404 Not Found"}')

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        """What mlops.toml project.gitlab_host says for this stand-in (loopback: plain http)."""
        return f"127.0.0.1:{self.server_port}"

    def ci_env(self, token: str) -> dict:
        """A CI job's variables as GitLab sets them (the endpoint comes from project.gitlab_host)."""
        return {
            "MLOPS_TRIGGER_TOKEN": token,
            "CI_PROJECT_ID": "77",
            "CI_COMMIT_REF_NAME": "main",
            "CI_PIPELINE_ID": "101",
        }

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


def argv_with(text: str) -> set[str]:
    """Process command lines (/proc/*/cmdline) that contain `text`."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.add(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200])
        except OSError:
            pass
    return found
