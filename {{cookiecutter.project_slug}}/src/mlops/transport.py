"""One authenticated SSH connection per `mlops` command, shared by every transfer and remote command.

Clusters refuse a reused one-time code (the same code twice in its 30 s window) and rate-limit
logins, so a command logs in ONCE and multiplexes channels over that paramiko Transport:
    1. TCP connect (directly, or through a jump host's direct-tcpip channel)
    2. key exchange, then the server's host key is compared with the pinned known_hosts entry
       BEFORE any credential is sent; unknown or changed keys are refused
    3. publickey, then (hpc_auth = totp) keyboard-interactive answered with ONE one-time code.
       A refused code is not retried: a retry loop is how accounts get locked.

Secrets come only from the environment (names in mlops.variables) or a hidden prompt with a TTY:
    HPC_SSH_PRIVATE_KEY  path of the private key (a GitLab "file" variable), default ~/.ssh/id_ed25519
    HPC_KNOWN_HOSTS      path of the pinned known_hosts (a "file" variable), default ~/.ssh/known_hosts
    HPC_OTP              a code typed by a person when starting the manual job
    HPC_TOTP_SECRET      the base32 TOTP secret (protected, masked, hidden variable)
Anything secret a remote process needs travels on the channel's stdin, never in argv.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import shlex
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .variables import BY_NAME
from .errors import BadInput, WorkFailed

KEY_VAR, KNOWN_HOSTS_VAR = BY_NAME["HPC_SSH_PRIVATE_KEY"].name, BY_NAME["HPC_KNOWN_HOSTS"].name
TOTP_VAR, OTP_VAR = BY_NAME["HPC_TOTP_SECRET"].name, BY_NAME["HPC_OTP"].name
CONNECT_TIMEOUT = 20


class TransportError(BadInput):
    """Connection or login refused; the message says what to fix. (CLI exit code 2.)"""


class RemoteError(WorkFailed):
    """A remote command failed."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 22
    user: str = ""

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names the host in known_hosts: `host`, or `[host]:port` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @classmethod
    def parse(cls, spec: str, default_user: str) -> "Endpoint":
        """`[user@]host[:port]`, as written in mlops.toml cluster.jump_host."""
        user, _, hostport = spec.rpartition("@")
        host, _, port = hostport.partition(":")
        return cls(host, int(port or 22), user or default_user)


# ------------------------------------------------------------------ credentials (importable)

def load_known_hosts(path: str | os.PathLike | None = None):
    """The pinned host keys: HPC_KNOWN_HOSTS (a file path), else ~/.ssh/known_hosts."""
    import paramiko

    path = Path(path or os.environ.get(KNOWN_HOSTS_VAR) or Path.home() / ".ssh" / "known_hosts")
    if not path.is_file():
        raise TransportError(f"{KNOWN_HOSTS_VAR}: no known_hosts file at {path}; set the CI file variable "
                             f"{KNOWN_HOSTS_VAR} to the cluster's host key line(s), checked out-of-band "
                             "(e.g. from the cluster's documentation), never fetched by ssh-keyscan in a job")
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except Exception as exc:  # paramiko raises several kinds on a malformed line
        raise TransportError(f"{KNOWN_HOSTS_VAR}: cannot parse {path}: {exc}") from None
    return keys


def load_private_key(path: str | os.PathLike | None = None):
    """The account's private key: HPC_SSH_PRIVATE_KEY (a file path), else ~/.ssh/id_ed25519."""
    import paramiko

    path = Path(path or os.environ.get(KEY_VAR) or Path.home() / ".ssh" / "id_ed25519")
    if not path.is_file():
        raise TransportError(f"{KEY_VAR}: no private key file at {path}; set the CI file variable {KEY_VAR} "
                             "(or point it at your key on a laptop)")
    try:
        return paramiko.PKey.from_path(str(path))
    except paramiko.PasswordRequiredException:
        raise TransportError(f"{KEY_VAR}: {path} is passphrase-protected; CI needs an unencrypted "
                             "key stored as a protected file variable (use ssh-agent on a laptop)") from None
    except Exception as exc:
        raise TransportError(f"{KEY_VAR}: cannot read the private key {path}: {exc}") from None


def totp_now(secret: str, at: float | None = None, digits: int = 6, period: int = 30) -> str:
    """RFC 6238 TOTP (SHA-1), as pam_google_authenticator computes it; no extra dependency."""
    try:
        key = base64.b32decode(secret.strip().replace(" ", "").upper() + "=" * (-len(secret.strip()) % 8))
    except Exception:
        raise TransportError(f"{TOTP_VAR}: not a base32 TOTP secret (letters A-Z and digits 2-7)") from None
    counter = int((time.time() if at is None else at) // period)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    return f"{code:0{digits}d}"


def one_time_code(env=os.environ, stdin=sys.stdin) -> str:
    """HPC_OTP (typed for a manual job), else a code from HPC_TOTP_SECRET, else a hidden prompt."""
    if env.get(OTP_VAR, "").strip():
        return env[OTP_VAR].strip()
    if env.get(TOTP_VAR, "").strip():
        totp_now(env[TOTP_VAR])  # check the secret before waiting
        # A code works once (DISALLOW_REUSE) and the cluster jobs run one after another (resource_group):
        # logging in only after a fresh 30 s step has begun guarantees this login's code differs from
        # the previous job's, which also logged in after its step began, before this job started.
        wait = 30 - time.time() % 30 + 0.5
        print(f"waiting {wait:.0f}s for a fresh one-time code (each code works once)", file=sys.stderr, flush=True)
        time.sleep(wait)
        return totp_now(env[TOTP_VAR])
    if stdin is not None and stdin.isatty():
        return getpass.getpass("cluster one-time code: ").strip()
    raise TransportError(f"hpc_auth is totp but no one-time code: set {OTP_VAR} when starting the manual job, "
                         f"or the protected variable {TOTP_VAR}, or run from a terminal to be asked")


# ------------------------------------------------------------------ the session

def _check_host_key(transport, endpoint: Endpoint, known) -> None:
    offered = transport.get_remote_server_key()
    pinned = known.lookup(endpoint.known_hosts_name) or (known.lookup(endpoint.host) if endpoint.port == 22 else None)
    fingerprint = f"{offered.get_name()} SHA256:{base64.b64encode(hashlib.sha256(offered.asbytes()).digest()).decode().rstrip('=')}"
    if not pinned:
        raise TransportError(f"{KNOWN_HOSTS_VAR}: host {endpoint.known_hosts_name} is not in the pinned known_hosts "
                             f"(it offered {fingerprint}); add its line after checking the fingerprint out-of-band. "
                             "Refusing to connect.")
    if pinned.get(offered.get_name()) != offered:
        raise TransportError(f"{KNOWN_HOSTS_VAR}: the host key of {endpoint.known_hosts_name} does NOT match the "
                             f"pinned one (it offered {fingerprint}). This is either a re-installed server or "
                             "someone in the middle: confirm the new key with the cluster admins before updating "
                             f"{KNOWN_HOSTS_VAR}. Refusing to connect.")


class Session:
    """A logged-in connection; use as a context manager. run()/sftp share the one Transport."""

    def __init__(self, endpoint: Endpoint, auth: str, key=None, known=None, jump: Endpoint | None = None,
                 code=None):
        self.endpoint, self.auth, self.jump = endpoint, auth, jump
        self._key, self._known, self._code = key, known, code
        self._transports: list = []
        self._sftp = None

    @classmethod
    def from_config(cls, cfg) -> "Session":
        c = cfg["cluster"]
        endpoint = Endpoint(str(c["host"]), int(c.get("port", 22)), str(c["user"]))
        jump = Endpoint.parse(c["jump_host"], endpoint.user) if c.get("jump_host") else None
        return cls(endpoint, str(c.get("auth", "totp")), jump=jump)

    # -- login
    def _login(self, endpoint: Endpoint, sock=None):
        import paramiko

        try:
            t = paramiko.Transport(sock or (endpoint.host, endpoint.port))
        except OSError as exc:
            raise TransportError(f"cannot reach {endpoint.host}:{endpoint.port}: {exc}") from None
        self._transports.append(t)
        t.banner_timeout = t.auth_timeout = CONNECT_TIMEOUT
        try:
            t.start_client(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"SSH handshake with {endpoint.host}:{endpoint.port} failed: {exc}") from None
        _check_host_key(t, endpoint, self._known)
        try:
            remaining = t.auth_publickey(endpoint.user, self._key)
        except paramiko.AuthenticationException as exc:
            raise TransportError(f"{KEY_VAR}: the cluster refused the key for {endpoint.user}@{endpoint.host} "
                                 f"({exc}); is its public key in ~/.ssh/authorized_keys there?") from None
        if t.is_authenticated():
            return t
        if "keyboard-interactive" not in remaining:
            raise TransportError(f"{endpoint.host} wants {remaining} after the key; mlops supports key and "
                                 "key + one-time code (keyboard-interactive)")
        if self.auth != "totp":
            raise TransportError(f"{endpoint.host} asks for a one-time code but mlops.toml cluster.auth is "
                                 f"{self.auth!r}: set it to \"totp\" (or ask for a command-restricted key)")
        code = self._code() if callable(self._code) else (self._code or one_time_code())

        def answer(title, instructions, prompts):  # called again with no prompts after success
            return [code for _ in prompts]
        try:
            t.auth_interactive(endpoint.user, answer)
        except paramiko.AuthenticationException:
            raise TransportError(f"the cluster refused the one-time code for {endpoint.user}@{endpoint.host}. "
                                 "Not retrying (repeated failures lock the account): wait for the next code "
                                 f"and start the job again with a fresh {OTP_VAR}, or check {TOTP_VAR} and "
                                 "the runner's clock") from None
        if not t.is_authenticated():
            raise TransportError(f"login to {endpoint.host} not complete after key + code")
        return t

    def __enter__(self) -> "Session":
        try:
            self._key = self._key or load_private_key()
            self._known = self._known or load_known_hosts()
            sock = None
            if self.jump:
                hop = self._login(self.jump)
                target = (self.endpoint.host, self.endpoint.port)
                sock = hop.open_channel("direct-tcpip", target, ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT)
            self.transport = self._login(self.endpoint, sock)
            self.transport.set_keepalive(30)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        for t in reversed(self._transports):
            t.close()
        self._transports.clear()

    # -- use
    @property
    def sftp(self):
        import paramiko

        if self._sftp is None:
            self._sftp = paramiko.SFTPClient.from_transport(self.transport)
        return self._sftp

    def run(self, command: str | list[str], stdin: bytes | None = None, timeout: float = 600,
            check: bool = True, stdout=None) -> tuple[int, str, str]:
        """Run a command on a new channel; secrets go in `stdin`. Returns (rc, stdout, stderr).

        With `stdout` (a binary file), output is streamed there instead of kept in memory.
        """
        if isinstance(command, list):
            command = shlex.join(command)
        channel = self.transport.open_session(timeout=CONNECT_TIMEOUT)
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                got = False
                while channel.recv_ready():
                    chunk = channel.recv(1 << 16)
                    stdout.write(chunk) if stdout is not None else out.extend(chunk)
                    got = True
                while channel.recv_stderr_ready():
                    err.extend(channel.recv_stderr(1 << 16))
                    got = True
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise RemoteError(f"remote command timed out after {timeout:.0f}s: {command[:200]}")
                if not got:
                    time.sleep(0.01)
            rc = channel.recv_exit_status()
        finally:
            channel.close()
        result = (rc, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and rc != 0:
            raise RemoteError(f"remote command failed (exit {rc}): {command[:300]}\n{result[2][-2000:]}")
        return result

    def python(self, script: str, *args: str, timeout: float = 300) -> str:
        """Run a small python3 script on the login node; the script travels on stdin, so the
        cluster needs no mlops install (only /usr/bin/python3, which login nodes have)."""
        rc, out, err = self.run(["python3", "-", *args], stdin=script.encode(), timeout=timeout, check=False)
        if rc != 0:
            raise RemoteError(f"remote python3 failed (exit {rc}):\n{err[-2000:]}")
        return out

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write a remote file created with `mode` from the start (0600: never readable by others)."""
        tmp = f"{path}.tmp{os.getpid()}"
        with self.sftp.open(tmp, "wb") as fh:
            fh.chmod(mode)
            fh.write(data)
        self.sftp.posix_rename(tmp, path)
