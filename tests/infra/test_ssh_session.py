"""The Session's channel API on a login node whose shell talks, and a login the environment cannot steer
(tier infra; needs root).

* Output framing (issue 18.3): the test user's ~/.bashrc prints a quota notice on stdout and a module
  message on stderr, as login nodes do (the OpenSSH client shows both: the control). Session.run returns
  exactly what the command printed; a JSON answer parses (mlops.cluster.reader reads a run); a binary
  stream (collect's tar.gz through results.fetch, and 3 MB of random bytes) arrives byte-identical.
* Resolver steering (issue 17.2): with LOCALDOMAIN=attacker.test RES_OPTIONS=ndots:9 in its environment,
  `mlops check-credentials --online` still logs in to the configured host; a stand-in server on another
  loopback address, where the steered name points, receives nothing (the control shows the steering works).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from mlops.cluster import reader
from mlops.results import caps, fetch
from mlops.ssh import Endpoint, Session
from support.infra.dns import DnsStandIn
from support.infra.sshd_totp import TotpSshServer
from support.render import render

pytestmark = [pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def noisy():
    with TotpSshServer(auth="key", rc_noise=True) as srv:
        yield srv


def session(srv, tmp: Path) -> Session:
    known = tmp / "known_hosts"
    srv.write_known_hosts(known)
    env = {"HPC_SSH_PRIVATE_KEY": str(srv.client_key_path)}
    return Session(Endpoint(srv.host, srv.port, srv.user), "key", env=env, known=known)


def test_the_login_shell_really_prints(noisy, tmp_path):
    """Control: what every `ssh host cmd` on this login node gets before the command's own output."""
    known = noisy.write_known_hosts(tmp_path / "kh")
    cp = subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes", "-i",
         str(noisy.client_key_path), "-p", str(noisy.port), f"{noisy.user}@127.0.0.1", "echo exact"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert cp.stdout == f"{noisy.NOISE_OUT}\nexact\n" and noisy.NOISE_ERR in cp.stderr, (cp.stdout, cp.stderr)


def test_run_returns_exactly_what_the_command_printed(noisy, tmp_path):
    with session(noisy, tmp_path) as s:
        assert s.run(["printf", "%s", "exact"]) == (0, "exact", "")
        assert s.run("echo out; echo err >&2; exit 3", check=False) == (3, "out\n", "err\n")
        doc = json.loads(s.python("import json, sys; print(json.dumps({'argv': sys.argv[1:]}))", "a b", "c"))
        assert doc == {"argv": ["a b", "c"]}
        assert s.run("cat", stdin=b"secret-on-stdin\n")[1] == "secret-on-stdin\n"
        assert len(s.noise) == 4  # what the shell printed was seen (and dropped) before each command


def test_cluster_state_reads_a_run_on_a_noisy_login_node(noisy, tmp_path):
    """Issue 18.3: status said an existing run "does not exist" when ~/.bashrc printed a line."""
    run_dir = Path(noisy.home) / "mlops-frame-test" / "runs" / "p1"
    (run_dir / "state").mkdir(parents=True, exist_ok=True)
    (run_dir / "state" / "jobs.json").write_text(json.dumps([{"attempt": 1, "kind": "slurm", "status": "submitted"}]))
    subprocess.run(["chown", "-R", f"{noisy.uid}:{noisy.gid}", str(run_dir.parents[1])], check=True)
    try:
        with session(noisy, tmp_path) as s:
            doc = reader.read_run(s, str(run_dir))
            listed = reader.list_runs(s, str(run_dir.parent))
        assert doc["exists"] is True and doc["attempts"][0]["status"] == "submitted" and doc["bad"] == []
        assert listed == [("p1", False)]
    finally:
        shutil.rmtree(run_dir.parents[1])


def test_binary_streams_arrive_byte_identical(noisy, tmp_path):
    """collect downloads a tar.gz through run(); random bytes with a frame-marker-like line and NULs too."""
    root = Path(noisy.home) / "mlops-frame-test"
    run_dir = root / "runs" / "p2"
    (run_dir / "results" / "0123456789").mkdir(parents=True)
    payload = os.urandom(3 << 20) + b"\nMLOPS-FRAME-" + b"0" * 32 + b"\n\0\0" + os.urandom(1000)
    (run_dir / "results" / "0123456789" / "model.bin").write_bytes(payload)
    (run_dir / "run.json").write_text('{"run_id": "p2"}\n')
    subprocess.run(["chown", "-R", f"{noisy.uid}:{noisy.gid}", str(root)], check=True)
    try:
        with session(noisy, tmp_path) as s:
            sink = io.BytesIO()
            assert s.run(["cat", str(run_dir / "results" / "0123456789" / "model.bin")], stdout=sink)[:2] == (0, "")
            assert hashlib.sha256(sink.getvalue()).digest() == hashlib.sha256(payload).digest()
            into = tmp_path / "stream.tar.gz"
            dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                size, too_large = fetch.download(
                    s, str(run_dir), dir_fd, into.name, caps.defaults(max_file_bytes=8 << 20)
                )
            finally:
                os.close(dir_fd)
        assert size == into.stat().st_size and too_large == []
        with tarfile.open(into) as tar:
            member = tar.extractfile("results/0123456789/model.bin")
            assert member is not None and member.read() == payload
    finally:
        shutil.rmtree(root)


def test_hold_sees_ready_only_from_the_command(noisy, tmp_path):
    with session(noisy, tmp_path) as s, s.hold(["sh", "-c", "echo locked; cat"], ready=b"locked"):
        assert s.run(["true"])[0] == 0  # the held channel and another one side by side


# ------------------------------------------------------------------ the resolver's environment


class StandIn:
    """A TCP listener on another loopback address that records every connection it gets."""

    def __init__(self, address: str, port: int):
        self.sock = socket.create_server((address, port))
        self.sock.settimeout(0.2)
        self.accepted: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.accepted.append(peer)
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_resolver_variables_cannot_steer_the_login(tmp_path):
    with TotpSshServer(auth="key") as srv:
        stand_in = StandIn("127.0.0.2", srv.port)
        answers = {"login.hpc.test": "127.0.0.1", "login.hpc.test.attacker.test": "127.0.0.2"}
        try:
            with DnsStandIn(answers) as dns:
                project = render(
                    tmp_path / "p", hpc_host="login.hpc.test", hpc_port=str(srv.port), hpc_user=srv.user,
                    hpc_auth="key", wandb_mode="disabled",
                )  # fmt: skip
                (project / ".gitlab" / "known_hosts").write_text(
                    srv.known_hosts_line.replace("[127.0.0.1]", "[login.hpc.test]") + "\n"
                )
                env = {k: v for k, v in os.environ.items() if not k.startswith(("HPC_", "CI", "GITLAB", "WANDB"))}
                env.update(
                    PYTHONPATH=str(project / "src"),
                    HPC_SSH_PRIVATE_KEY=str(srv.client_key_path),
                    LOCALDOMAIN="attacker.test",
                    RES_OPTIONS="ndots:9",
                )
                probe = "import socket; print(socket.gethostbyname('login.hpc.test'))"
                control = subprocess.run(
                    dns.command([sys.executable, "-c", probe]), env=env, capture_output=True, text=True, timeout=60
                )
                assert control.stdout.strip() == "127.0.0.2", control.stderr  # the variables do steer glibc here
                before = len(dns.queries)
                cp = subprocess.run(
                    dns.command([sys.executable, "-m", "mlops", "check-credentials", "--online"]),
                    cwd=project, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                )  # fmt: skip
                asked = dns.queries[before:]
        finally:
            stand_in.close()
        passed = re.search(r"\[PASS\] SSH login \S+ \(cluster login\): logged in and ran a command", cp.stdout)
        assert passed, cp.stdout + cp.stderr
        assert stand_in.accepted == [] and srv.count_logins() == 1
        assert "login.hpc.test." in asked and "login.hpc.test.attacker.test." not in asked, asked
