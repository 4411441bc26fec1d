"""A second, private sshd on 127.0.0.1 acting as an HPC login node with 2FA.

``auth='totp'`` (default): publickey AND keyboard-interactive TOTP
(pam_google_authenticator with RATE_LIMIT 10 30, WINDOW_SIZE 3, DISALLOW_REUSE),
i.e. like real clusters: a code works once per 30 s window, so a client must
authenticate ONCE and multiplex.  ``auth='key'``: publickey only.
``auth='totp+password'``: PAM asks the code ("Your OTP:", as bwHPC) then the
account's password (pam_unix, a random password set with chpasswd: ``.password``);
``auth='password+totp'``: the password first, then "Verification code:";
``auth='password&totp'``: ONE prompt for both, the password immediately followed by the
code (pam_google_authenticator ``forward_pass`` + ``pam_unix use_first_pass``).
``prompts``: the sites' wording, one text per question in the stack's order (None keeps the
module's own): code prompts through pam_google_authenticator's ``authtok_prompt``, password
prompts through ``pam_prompt.so`` (built here from pam_prompt.c) + ``pam_unix use_first_pass``.
``disallow_reuse=False`` drops DISALLOW_REUSE (and the rate limit) for load tests.

``rc_noise=True``: the user's ~/.bashrc prints to stdout and stderr (a quota notice, a module
message) as login nodes do; bash sources it for every ``ssh host cmd`` (Debian's bash reads
~/.bashrc when started by sshd). Restored at stop.

Host keys: ``host_key_types`` (default ``("ed25519",)``; e.g. ``("ed25519",
"ecdsa", "rsa")``) and, with ``host_cert=True``, an ed25519 host certificate
signed by a test CA (``ssh-keygen -s``; ``ca_public_line``, principals
``cert_principals``), as sshd ``HostCertificate``; ``set_host_certificate(...)`` replaces it
(CA of any type ssh-keygen makes, signature algorithm, principals, or a certificate made
elsewhere) and restarts the listener.

Isolation: the binary is started through a symlink ``sshd-mlops-<port>`` because
sshd names its PAM service after argv[0]; so ``/etc/pam.d/sshd-mlops-<port>`` is
ours alone (removed at stop).  Host key, client key, the TOTP secret file
and the VERBOSE log all live in the instance's workdir; the public key goes to
``~user/.ssh/authorized_keys_mlops_<port>`` (``AuthorizedKeysFile``; one file per
instance so several servers for one user do not clash; removed at stop; it is not
in the workdir because StrictModes refuses key files on paths through /tmp).

Environment for exec sessions (``ssh host cmd``, paramiko ``exec_command``):
``setenv={'SLURM_CONF': ...}`` becomes sshd ``SetEnv``; it applies to every
session type without relying on shell start-up files.
"""

import base64
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import paramiko
import pyotp

from ._util import (
    InfraError,
    Service,
    check_traversable,
    children_of,
    pid_alive,
    run,
    shared_tmpdir,
    stop_pid,
    wait_for,
)
from .ports import free_port
from .users import ensure_user

SSHD = "/usr/sbin/sshd"
PAM_DIR = Path("/etc/pam.d")


class TotpSshServer(Service):
    """Context manager: ``with TotpSshServer() as srv: t = srv.transport()``.

    Attributes: host, port, user, home, client_key_path, host_key_path,
    totp_secret (never log it), known_hosts_line, log_path, workdir.
    """

    AUTHS = ("totp", "key", "totp+password", "password+totp", "password&totp")

    def __init__(
        self,
        workdir=None,
        user: str = "mlopshpc",
        port: int = None,
        auth: str = "totp",
        setenv: dict = None,
        max_sessions: int = 50,
        host_key_types=("ed25519",),
        host_cert: bool = False,
        cert_principals=("127.0.0.1",),
        disallow_reuse: bool = True,
        prompts=None,
        rc_noise: bool = False,
    ):
        if auth not in self.AUTHS:
            raise ValueError(f"auth must be one of {self.AUTHS}")
        self.host_key_types, self.host_cert = tuple(host_key_types), host_cert
        self.cert_principals, self.disallow_reuse = tuple(cert_principals), disallow_reuse
        self.password = None
        self.prompts, self.rc_noise, self._bashrc = prompts, rc_noise, None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else shared_tmpdir("mlops-sshd-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.user, self.auth, self.host = user, auth, "127.0.0.1"
        self.port = port or free_port()
        self.setenv = dict(setenv or {})
        self.max_sessions = max_sessions
        self.name = f"sshd-mlops-{self.port}"
        self.pam_path = PAM_DIR / self.name
        self.log_path = self.workdir / "sshd.log"
        self.config_path = self.workdir / "sshd_config"
        self.host_key_path = self.workdir / "ssh_host_ed25519_key"
        self.client_key_path = self.workdir / "client_ed25519"
        self.totp_secret = None
        self._proc = None
        self._used_steps = set()
        self._orphans = []
        self._masters = []  # (ssh_config, alias, pid) of OpenSSH ControlMasters

    # ---------------------------------------------------------------- setup
    def start(self):
        check_traversable(self.workdir)  # the user's sshd child reads files here
        pw = ensure_user(self.user)
        self.uid, self.gid, self.home = pw.pw_uid, pw.pw_gid, pw.pw_dir
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privsep dir
        for kind in self.host_key_types:
            self._keygen(self.host_key_file(kind), "mlops-test-host", kind)
        if self.host_cert:
            self._sign_host_key("ed25519", None, self.cert_principals)
        self._keygen(self.client_key_path, "mlops-test-client")
        # StrictModes rejects any path through /tmp (mode 1777), so the key
        # file lives in the user's ~/.ssh, but one file per instance/port.
        sshdir = Path(self.home) / ".ssh"
        sshdir.mkdir(mode=0o700, exist_ok=True)
        os.chown(sshdir, self.uid, self.gid)
        self.authorized_keys_path = sshdir / f"authorized_keys_mlops_{self.port}"
        self.authorized_keys_path.write_text(Path(f"{self.client_key_path}.pub").read_text())
        self.authorized_keys_path.chmod(0o644)  # root-owned, not writable by others: OK for sshd
        pam = ["account required pam_unix.so", "session required pam_unix.so"]
        pam[:0] = self._auth_stack()
        self.pam_path.write_text("# written by tests/infra/sshd_totp.py\n" + "\n".join(pam) + "\n")
        if self.rc_noise:
            self._write_noisy_bashrc()
        link = self.workdir / self.name
        if not link.is_symlink():
            link.symlink_to(SSHD)
        self._write_config()
        run([str(link), "-t", "-f", str(self.config_path)], timeout=30)
        self._spawn()
        return self

    def _auth_stack(self) -> list:
        """The PAM auth lines for ``auth`` with ``prompts`` (see the module docstring)."""
        if self.auth == "key":
            return ["auth required pam_deny.so"]  # keyboard-interactive never passes
        self._write_totp_file()
        ga = f"auth required pam_google_authenticator.so secret={self.workdir}/ga/${{USER}}"
        order = {"totp": "c", "totp+password": "cp", "password+totp": "pc", "password&totp": "b"}[self.auth]
        default = {"totp+password": ("Your OTP: ", None)}.get(self.auth, (None,) * len(order))
        texts = list(self.prompts or default)
        if len(texts) != len(order):
            raise ValueError(f"auth {self.auth!r} asks {len(order)} question(s); prompts={self.prompts!r}")
        if "p" in order or "b" in order:
            self._set_password()
        lines = []
        for question, text in zip(order, texts):
            if question == "c":
                lines.append(ga + (f" [authtok_prompt={text}]" if text else ""))
            elif question == "b":
                lines += [ga + " forward_pass" + (f" [authtok_prompt={text}]" if text else ""),
                          "auth required pam_unix.so use_first_pass"]  # fmt: skip
            elif text:
                lines += [f"auth required {self._pam_prompt_module()} [prompt={text}]",
                          "auth required pam_unix.so use_first_pass"]  # fmt: skip
            else:
                lines.append("auth required pam_unix.so")
        return lines

    def _pam_prompt_module(self) -> Path:
        """pam_prompt.so built from pam_prompt.c (gcc, libpam0g-dev: .ci/run installs them)."""
        out = self.workdir / "pam_prompt.so"
        if not out.exists():
            source = Path(__file__).with_name("pam_prompt.c")
            run(["gcc", "-shared", "-fPIC", "-Wall", "-o", str(out), str(source), "-lpam"], timeout=120)
            out.chmod(0o755)
        return out

    NOISE_OUT = "Disk quota: 93% of 100 GB used on /home (mlops test login node)"
    NOISE_ERR = "module: loading intel/2024.1 (default); see: module avail"

    def _write_noisy_bashrc(self):
        """~/.bashrc that prints on stdout and stderr for every shell, interactive or not (issue 18.3)."""
        rc = Path(self.home) / ".bashrc"
        self._bashrc = rc.read_bytes() if rc.exists() else b""
        rc.write_text(f"echo '{self.NOISE_OUT}'\necho '{self.NOISE_ERR}' >&2\n")
        os.chown(rc, self.uid, self.gid)

    def host_key_file(self, kind: str) -> Path:
        return self.workdir / f"ssh_host_{kind}_key"

    def _keygen(self, path: Path, comment: str, kind: str = "ed25519"):
        for p in (path, Path(f"{path}.pub"), Path(f"{path}-cert.pub")):
            if p.exists():
                p.unlink()
        bits = ["-b", "3072"] if kind == "rsa" else []
        run(["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-C", comment, "-f", str(path)])
        path.chmod(0o600)

    def _set_password(self):
        """A random password for the user (pam_unix); given on stdin, never in argv."""
        import secrets

        self.password = secrets.token_urlsafe(18)
        subprocess.run(
            ["chpasswd"], input=f"{self.user}:{self.password}\n", text=True, check=True, capture_output=True, timeout=30
        )

    def public_line(self, kind: str, name: str = None) -> str:
        """``NAME TYPE BASE64`` for the host key of ``kind`` (default name ``[127.0.0.1]:PORT``)."""
        key_type, b64 = Path(f"{self.host_key_file(kind)}.pub").read_text().split()[:2]
        return f"{name or f'[{self.host}]:{self.port}'} {key_type} {b64}"

    @property
    def ca_public_line(self) -> str:
        """``TYPE BASE64`` of the test CA (for an ``@cert-authority NAME`` line)."""
        return self.ca_line("ed25519")

    def ca_file(self, kind: str) -> Path:
        return self.workdir / ("test_ca" if kind == "ed25519" else f"test_ca_{kind}")

    def ca_line(self, kind: str) -> str:
        """``TYPE BASE64`` of the test CA of ``kind`` (ed25519, rsa, ecdsa, ...)."""
        return " ".join(Path(f"{self.ca_file(kind)}.pub").read_text().split()[:2])

    def _sign_host_key(self, ca_kind: str, algorithm, principals):
        ca = self.ca_file(ca_kind)
        if not ca.exists():
            self._keygen(ca, "mlops-test-ca", ca_kind)
        sig = ["-t", algorithm] if algorithm else []
        host = f"{self.host_key_file('ed25519')}.pub"
        run(["ssh-keygen", "-q", "-s", str(ca), *sig, "-I", "mlops-test-host", "-h", "-n", ",".join(principals),
             "-V", "-5m:+1d", host])  # fmt: skip

    def set_host_certificate(self, ca_kind: str = "ed25519", algorithm=None, principals=("127.0.0.1",), cert=None):
        """Replace the ed25519 host key's certificate and restart: signed by the test CA of ``ca_kind`` with
        ``algorithm`` (ssh-keygen -t, e.g. rsa-sha2-512 or ssh-rsa), or ``cert`` (a certificate blob made
        elsewhere). Established connections keep the old listener."""
        if cert is None:
            self._sign_host_key(ca_kind, algorithm, principals)
        else:
            kind = cert[4 : 4 + int.from_bytes(cert[:4], "big")].decode()
            path = Path(f"{self.host_key_file('ed25519')}-cert.pub")
            path.write_text(f"{kind} {base64.b64encode(cert).decode()} mlops-test\n")
        self.host_cert = True
        self._write_config()
        self._restart()

    def host_public_blob(self, kind: str = "ed25519") -> bytes:
        return base64.b64decode(Path(f"{self.host_key_file(kind)}.pub").read_text().split()[1])

    def _write_totp_file(self):
        # Fresh random secret per instance.  The file sits in a dir owned by
        # the user because the PAM module runs with the user's fsuid and
        # rewrites it (DISALLOW_REUSE / RATE_LIMIT state) via a temp file.
        self.totp_secret = pyotp.random_base32()
        gadir = self.workdir / "ga"
        gadir.mkdir(mode=0o700, exist_ok=True)
        f = gadir / self.user
        options = (
            '" RATE_LIMIT 10 30\n" WINDOW_SIZE 3\n" DISALLOW_REUSE\n' if self.disallow_reuse else '" WINDOW_SIZE 3\n'
        )
        f.write_text(f'{self.totp_secret}\n{options}" TOTP_AUTH\n')
        f.chmod(0o600)
        for p in (gadir, f):
            os.chown(p, self.uid, self.gid)

    def _write_config(self):
        kbd = self.auth != "key"
        methods = "publickey,keyboard-interactive" if kbd else "publickey"
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            *[f"HostKey {self.host_key_file(kind)}" for kind in self.host_key_types],
            *([f"HostCertificate {self.host_key_file('ed25519')}-cert.pub"] if self.host_cert else []),
            f"PidFile {self.workdir}/sshd.pid",
            f"AuthorizedKeysFile .ssh/{self.authorized_keys_path.name}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            f"KbdInteractiveAuthentication {'yes' if kbd else 'no'}",
            "UsePAM yes",
            f"AuthenticationMethods {methods}",
            f"AllowUsers {self.user}",
            "PermitRootLogin no",
            "Subsystem sftp internal-sftp",
            f"MaxSessions {self.max_sessions}",
            "MaxStartups 50:30:100",
            "LogLevel VERBOSE",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
        ]
        if self.setenv:
            lines.append("SetEnv " + " ".join(f'"{k}={v}"' for k, v in self.setenv.items()))
        self.config_path.write_text("\n".join(lines) + "\n")

    def _spawn(self):
        marker = f"Server listening on {self.host} port {self.port}"
        before = self.log_text().count(marker)
        out = open(self.workdir / "sshd.stderr", "ab")
        # -D: stay in foreground so Popen.pid IS the listener; -E: log to file
        self._proc = subprocess.Popen(
            [str(self.workdir / self.name), "-D", "-E", str(self.log_path), "-f", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            close_fds=True,
        )
        out.close()

        def up():
            if self._proc.poll() is not None:
                raise InfraError(f"sshd exited rc={self._proc.returncode}")
            return self.log_text().count(marker) > before

        try:
            wait_for(up, 15, f"sshd on {self.host}:{self.port}", logs=[self.log_path, self.workdir / "sshd.stderr"])
        except InfraError as exc:
            if self._proc.poll() is None:
                stop_pid(self._proc)
            raise exc

    # ---------------------------------------------------------------- info
    @property
    def known_hosts_line(self) -> str:
        """``[127.0.0.1]:PORT ssh-ed25519 AAAA...`` as OpenSSH writes it."""
        kind, b64 = Path(f"{self.host_key_path}.pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {b64}"

    def host_public_key(self) -> paramiko.PKey:
        return paramiko.Ed25519Key(filename=str(self.host_key_path))

    def write_known_hosts(self, path) -> Path:
        Path(path).write_text(self.known_hosts_line + "\n")
        return Path(path)

    def write_ssh_config(self, path, alias: str = "hpc", known_hosts=None, control_dir=None) -> Path:
        """An OpenSSH client config (``ssh -F path alias cmd``); pins the host key."""
        kh = Path(known_hosts or Path(path).with_suffix(".known_hosts"))
        self.write_known_hosts(kh)
        lines = [
            f"Host {alias}",
            f"  HostName {self.host}",
            f"  Port {self.port}",
            f"  User {self.user}",
            f"  IdentityFile {self.client_key_path}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {kh}",
            "  StrictHostKeyChecking yes",
            "  BatchMode no",
        ]
        if control_dir:
            lines += [f"  ControlPath {control_dir}/%C", "  ControlMaster auto", "  ControlPersist 600"]
        Path(path).write_text("\n".join(lines) + "\n")
        return Path(path)

    def otp(self, fresh: bool = True, max_wait: float = 31) -> str:
        """Current TOTP code.  With ``fresh`` (default), if this instance already
        handed out the code of the current 30 s step, wait for the next step:
        DISALLOW_REUSE would refuse it anyway."""
        totp = pyotp.TOTP(self.totp_secret)
        step = int(time.time()) // 30
        if fresh and step in self._used_steps:
            time.sleep(min(max_wait, (step + 1) * 30 - time.time() + 0.2))
            step = int(time.time()) // 30
        self._used_steps.add(step)
        return totp.at(step * 30)

    def wrong_otp(self) -> str:
        """A 6-digit code that is not valid in the current +-1 step window."""
        totp, now = pyotp.TOTP(self.totp_secret), time.time()
        valid = {totp.at(now + d) for d in (-60, -30, 0, 30, 60)}
        return next(c for c in (f"{i:06d}" for i in range(1000, 10**6, 7919)) if c not in valid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def count_connections(self) -> int:
        """TCP connections sshd accepted (one per client login attempt)."""
        return len(re.findall(r"^.*Connection from \S+ port \d+ on ", self.log_text(), re.M))

    def count_auth_attempts(self) -> int:
        """Completed-or-failed logins: each ``Accepted``/``Failed`` line for the
        final method (keyboard-interactive in totp mode, publickey in key mode)."""
        method = "keyboard-interactive" if self.auth != "key" else "publickey"
        return len(re.findall(rf"(Accepted|Failed) {method}\S* for ", self.log_text()))

    def count_failed(self) -> int:
        """Failed keyboard-interactive (PAM) attempts in the VERBOSE log."""
        return len(re.findall(r"Failed keyboard-interactive\S* for ", self.log_text()))

    def count_logins(self) -> int:
        """Fully authenticated logins (``Accepted`` for the final method)."""
        method = "keyboard-interactive" if self.auth != "key" else "publickey"
        return len(re.findall(rf"Accepted {method}\S* for ", self.log_text()))

    # ---------------------------------------------------------------- client
    def transport(self, code: str = None, timeout: float = 15) -> paramiko.Transport:
        """A logged-in paramiko Transport (key, then TOTP ``code`` or otp()).

        SSHClient.connect cannot do key + OTP prompt, hence a bare Transport.
        The server key is compared with the pinned one before sending anything.
        """
        t = paramiko.Transport((self.host, self.port))
        try:
            t.start_client(timeout=timeout)
            if t.get_remote_server_key() != self.host_public_key():
                raise paramiko.SSHException("host key mismatch")
            key = paramiko.Ed25519Key(filename=str(self.client_key_path))
            remaining = t.auth_publickey(self.user, key)
            if "keyboard-interactive" in remaining:
                answer = code if code is not None else self.otp()
                t.auth_interactive(self.user, lambda title, inst, prompts: [answer for _ in prompts])
            if not t.is_authenticated():
                raise paramiko.AuthenticationException(f"not authenticated, remaining {remaining}")
        except Exception:
            t.close()
            raise
        return t

    def openssh_master(self, ssh_config, alias: str = "hpc", timeout: float = 30) -> int:
        """Open an OpenSSH ControlMaster (config from ``write_ssh_config(...,
        control_dir=...)``), answering the TOTP prompt with sshpass; later
        ``ssh -F cfg alias cmd`` / scp / sftp reuse it without a code.

        ``ssh ... true`` (not -fN: the master would die with sshpass); the code
        goes through the SSHPASS env var, not argv.  Returns the master's PID
        (stopped in ``stop()`` if still running).
        """
        env = {**os.environ, "SSHPASS": self.otp()}
        run(
            [
                "sshpass",
                "-e",
                "-P",
                "Verification code",
                "ssh",
                "-F",
                str(ssh_config),
                "-o",
                "BatchMode=no",
                alias,
                "true",
            ],
            env=env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        cp = run(["ssh", "-F", str(ssh_config), "-O", "check", alias], timeout=10)
        pid = int(re.search(r"pid=(\d+)", cp.stdout + cp.stderr).group(1))
        self._masters.append((str(ssh_config), alias, pid))
        return pid

    # ---------------------------------------------------------------- control
    def set_env(self, env: dict):
        """Replace the SetEnv variables and restart the listener (same port)."""
        self.setenv = dict(env)
        self._write_config()
        self._restart()

    def rotate_host_key(self) -> str:
        """New host key + restart: clients pinning the old key must refuse."""
        self._keygen(self.host_key_path, "mlops-test-host")
        self._restart()
        return self.known_hosts_line

    def _restart(self):
        # established connections keep running under the old listener's
        # children (like a real sshd restart); remember them for stop()
        if self._proc is not None:
            self._orphans += children_of(self._proc.pid)
            stop_pid(self._proc)
        self._spawn()

    def stop(self):
        for cfg, alias, pid in self._masters:
            subprocess.run(["ssh", "-F", cfg, "-O", "exit", alias], capture_output=True, timeout=10)
            if pid_alive(pid):
                stop_pid(pid, timeout=3)
        self._masters = []
        if self._proc is not None:
            # per-connection sshd children outlive the listener: stop them too
            self._orphans += children_of(self._proc.pid)
            stop_pid(self._proc)
            self._proc = None
        for k in self._orphans:
            try:  # PIDs may have been reused since: only stop sshd processes
                if os.readlink(f"/proc/{k}/exe") == SSHD:
                    stop_pid(k, timeout=3)
            except OSError:
                pass
        self._orphans = []
        self.pam_path.unlink(missing_ok=True)
        if self._bashrc is not None:
            (Path(self.home) / ".bashrc").write_bytes(self._bashrc)
            self._bashrc = None
        if self.password:  # lock the account's password again (no secret in argv: "!" is the lock)
            subprocess.run(["usermod", "-p", "!", self.user], capture_output=True, timeout=30)
            self.password = None
        if getattr(self, "authorized_keys_path", None):
            self.authorized_keys_path.unlink(missing_ok=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _started(self) -> bool:
        return self._proc is not None


def exec_command(transport: paramiko.Transport, cmd: str, timeout: float = 120, stdin: bytes = None):
    """Run ``cmd`` on a new channel of ``transport``; return (rc, stdout, stderr).

    Bounded: raises TimeoutError if the command has not finished in ``timeout``.
    """
    ch = transport.open_session(timeout=15)
    try:
        ch.settimeout(timeout)
        ch.exec_command(cmd)
        if stdin is not None:
            ch.sendall(stdin)
        ch.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            while ch.recv_ready():
                out += ch.recv(65536)
            while ch.recv_stderr_ready():
                err += ch.recv_stderr(65536)
            if ch.exit_status_ready() and not ch.recv_ready() and not ch.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"remote command timed out after {timeout}s: {cmd}")
            time.sleep(0.02)
        return ch.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")
    finally:
        ch.close()


class CodeBook:
    """One-time codes for tests, handed out as a person or the TOTP secret gives them, and never
    one that can expire before it is used: only the current step's code or the next step's (the
    server's WINDOW_SIZE 3 accepts t-1..t+1, so both stay valid for at least 30 s after they are
    handed out; the previous step's code, valid only until the end of this step, is never used).
    ``distinct`` (a server with DISALLOW_REUSE): no step twice; when both are used, wait (bounded)
    for the next step. The same choice as the product's ``mlops.ssh.codes.choose_step``."""

    def __init__(self, secret: str, distinct: bool = True):
        self.totp, self.used, self.distinct = pyotp.TOTP(secret), set(), distinct

    def next(self, ahead: bool = False) -> str:
        """A code valid for at least 30 s; ``ahead``: only the next step's (at least 60 s: a code
        typed when a CI job is started must survive runner pickup and tool install)."""
        for _ in range(3):
            now = int(time.time() // 30)
            for step in (now + 1,) if ahead else (now, now + 1):
                if not self.distinct or step not in self.used:
                    self.used.add(step)
                    return self.totp.at(step * 30)
            time.sleep(max(0.0, (now + 1) * 30 - time.time()) + 0.2)
        raise InfraError("no fresh one-time code within 90 s")

    def wait_past_handed_out(self) -> None:
        """Return once every step this book handed out is in the past (waits at most ~90 s). A login that
        computes its code from the secret (the product's ``SecretCodes``) takes the CURRENT step and, when
        refused, the next one; ``next(ahead=True)`` hands out future steps, so without this wait both of the
        product's codes can land on steps a test already typed (DISALLOW_REUSE refuses them twice)."""
        if not self.used:
            return
        last = max(self.used)
        deadline = time.monotonic() + 95
        while int(time.time() // 30) <= last:
            if time.monotonic() > deadline:
                raise InfraError(f"step {last} still not past after 95 s (clock jumped?)")
            time.sleep(max(0.0, (int(time.time() // 30) + 1) * 30 - time.time()) + 0.2)
