"""One authenticated SSH connection per `mlops` command, shared by every transfer and remote command.

Clusters refuse a reused one-time code and rate-limit logins, so a command logs in ONCE (enter the
Session before any slow local work: a typed code is only good for a minute or two) and multiplexes
channels over that paramiko Transport:
    1. TCP connect (directly, or through a jump host's direct-tcpip channel)
    2. key exchange offering only the host-key algorithms pinned for the host (known_hosts.py); the
       host key (or host certificate) is verified BEFORE any credential is sent
    3. publickey, then keyboard-interactive: each prompt classified (prompts.py); the one-time code
       goes only into a code prompt, HPC_PASSWORD only into a password prompt (cluster.auth
       "totp+password"); anything else stops the login before answering
    4. a refused code from HPC_TOTP_SECRET gets ONE retry on a new connection with a later step's code
       (codes.py); a typed HPC_OTP is never retried. Budget: 1 attempt (typed), 2 (secret).
Anything secret a remote process needs travels on the channel's stdin, never in argv.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import civars
from ..errors import BadInput, WorkFailed
from ..remote import ConnectionLost, RemoteError, Sink
from . import codes as codes_mod
from . import keys, known_hosts, prompts, sources

if TYPE_CHECKING:
    import paramiko

    from ..settings import Settings

KNOWN_HOSTS_VAR, PASSWORD_VAR = civars.KNOWN_HOSTS, civars.PASSWORD
CONNECT_TIMEOUT = 20
AUTH_MODES = ("totp", "totp+password", "command-key", "key")

# paramiko logs a handler's exception with a traceback; the user gets our message instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class LoginFailed(BadInput):
    """Connection or login refused; the message says what to fix (exit 2)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 22
    user: str = ""

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH names the host in known_hosts: `host`, or `[host]:port` off port 22."""
        return known_hosts.host_name(self.host, self.port)

    @classmethod
    def parse(cls, spec: str, default_user: str) -> Endpoint:
        """`[user@]host[:port]` or `[user@][host]:port`, as written in mlops.toml cluster.jump_host."""
        user, _, hostport = spec.strip().rpartition("@")
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port = hostport.partition(":")
        if not host or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
            raise BadInput(
                f"cluster.jump_host: {sources.sanitize(spec, 80)!r} is not [user@]host[:port] with a "
                "port from 1 to 65535. Fix: correct it in mlops.toml"
            )
        return cls(host, int(port or 22), user or default_user)


def load_known_hosts(env: Mapping[str, str] = os.environ) -> tuple[known_hosts.KnownHosts, str]:
    """The pinned host keys: HPC_KNOWN_HOSTS (a path, or the lines themselves), else ~/.ssh/known_hosts."""
    value = env.get(KNOWN_HOSTS_VAR, "")
    if value.strip() and sources.existing_file(value) is None and ("\n" in value.strip() or " " in value.strip()):
        label = sources.describe(KNOWN_HOSTS_VAR, env)  # the lines themselves (a "Variable", not a "File")
        return known_hosts.parse(value, KNOWN_HOSTS_VAR), label
    path = Path(os.path.expanduser(value.strip() or "~/.ssh/known_hosts"))
    label = sources.describe(KNOWN_HOSTS_VAR, env) if value.strip() else f"{path} (default; {KNOWN_HOSTS_VAR} unset)"
    if not path.is_file():
        raise LoginFailed(
            f"{label}: no known_hosts file. Fix: set the CI file variable {KNOWN_HOSTS_VAR} to the "
            "cluster's host key line(s), checked out-of-band (e.g. from the cluster's documentation), "
            "never fetched by ssh-keyscan in a job"
        )
    return known_hosts.parse(path.read_text(errors="replace"), str(path)), label


_TRANSPORT_CLASS = None


def _Transport(sock):
    """A paramiko.Transport that keeps the raw host key blob (a certificate is parsed from it)."""
    global _TRANSPORT_CLASS
    if _TRANSPORT_CLASS is None:
        import paramiko

        class Transport(paramiko.Transport):
            def _verify_key(self, host_key, sig):
                self.mlops_host_key_blob = bytes(host_key)
                return super()._verify_key(host_key, sig)

        _TRANSPORT_CLASS = Transport
    return _TRANSPORT_CLASS(sock)


class Session:
    """A logged-in connection; use as a context manager. run()/python()/write_file()/sftp share one Transport.

    `codes`: a mlops.ssh.codes.Codes or a callable returning one (default: codes.from_env at the first
    code prompt). `known`: a KnownHosts (default: load_known_hosts()). `key`: a paramiko PKey (default:
    keys.load()). `password`: HPC_PASSWORD's value for auth "totp+password" (default: from env).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        auth: str = "totp",
        key=None,
        known=None,
        jump: Endpoint | None = None,
        code=None,
        ssh_key_setting: str | None = None,
        env=None,
        password: str | None = None,
        clock=time.time,
    ):
        self.endpoint, self.auth, self.jump = endpoint, auth, jump
        self._key, self._known, self._code, self._setting = key, known, code, ssh_key_setting
        self._env = os.environ if env is None else env
        self._password, self._clock = password, clock
        self._codes: codes_mod.Codes | None = None
        self._transports: list = []
        self._sftp = None
        self.transport: Any = None  # the logged-in paramiko Transport
        self.attempts = 0  # keyboard-interactive attempts this session made (the documented budget)
        self.notes: list[str] = []  # what happened, for a verbose line (never a secret)
        self.answerers: list[prompts.Answerer] = []  # one per keyboard-interactive attempt (rounds, answers)

    @classmethod
    def from_settings(cls, s: Settings) -> Session:
        """From typed settings (mlops.settings): s.cluster.{host, port, user, jump_host, auth, ssh_key}."""
        c = s.cluster
        endpoint = Endpoint(str(c.host), int(c.port), str(c.user))
        jump = Endpoint.parse(c.jump_host, endpoint.user) if c.jump_host else None
        return cls(endpoint, str(c.auth), jump=jump, ssh_key_setting=str(c.ssh_key or "") or None)

    # ------------------------------------------------------------------ login
    def _codes_source(self):
        if self._codes is None:
            code = self._code
            if isinstance(code, codes_mod.Codes):
                self._codes = code
            elif callable(code):
                self._codes = code()
            elif isinstance(code, str):
                self._codes = codes_mod.TypedCode(code, "the code given")
            else:
                self._codes = codes_mod.from_env(self._env)
        return self._codes

    def _check_setup(self) -> None:
        """Everything that can be checked before connecting (no code is spent on bad input)."""
        if self.auth not in AUTH_MODES:
            raise BadInput(
                f"cluster.auth: {sources.sanitize(self.auth, 40)!r} is not one of {', '.join(AUTH_MODES)}. "
                "Fix: correct it in mlops.toml"
            )
        if self.auth == "totp+password" and self._password is None:
            self._password = self._env.get(PASSWORD_VAR) or None
            if not self._password:
                raise BadInput(
                    f'cluster.auth is "totp+password" but {sources.describe(PASSWORD_VAR, self._env)}. '
                    f"Fix: store the service password as the protected variable {PASSWORD_VAR}"
                )
        if self.auth in ("totp", "totp+password") and self._code is None:
            self._codes_source()  # a missing or malformed code source is bad input: say so before connecting

    def _connect(self, endpoint: Endpoint, sock=None):
        import paramiko

        where = f"{endpoint.host}:{endpoint.port}"
        try:
            t = _Transport(sock or socket.create_connection((endpoint.host, endpoint.port), CONNECT_TIMEOUT))
        except OSError as exc:
            raise LoginFailed(
                f"cannot reach {where}: {exc.strerror or exc}. Fix: check cluster.host/port, your "
                "VPN or jump host (cluster.jump_host)"
            ) from None
        self._transports.append(t)
        t.banner_timeout = t.auth_timeout = CONNECT_TIMEOUT
        pins = known_hosts.lookup(self._known, endpoint.host, endpoint.port)
        offered = pins.algorithms(paramiko.Transport._key_info)
        if offered:  # no usable pin: offer everything, only to name the key in the refusal
            t.get_security_options().key_types = offered
        try:
            t.start_client(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if offered and "host key" in str(exc).lower():
                raise known_hosts.HostKeyRefused(
                    f"{pins.name} has no host key of the pinned type(s) ({', '.join(offered)}): the server "
                    f"offered none of them, so it cannot prove the pinned key. Refusing to connect. Fix: confirm "
                    "the host key with the cluster admins"
                ) from None
            raise LoginFailed(
                f"connection closed by the server during the SSH handshake with {where} ({sources.sanitize(exc, 200)})"
            ) from None
        self.notes.append(
            known_hosts.verify(pins, endpoint.host, t.host_key_type, t.mlops_host_key_blob, now=self._clock())
        )
        return t

    def _login(self, endpoint: Endpoint, sock=None):
        """One connection: host key, publickey, keyboard-interactive (one attempt). Returns the transport."""
        import paramiko

        t = self._connect(endpoint, sock)
        who = f"{endpoint.user}@{endpoint.host}"
        try:
            remaining = t.auth_publickey(endpoint.user, self._key)
        except paramiko.BadAuthenticationType as exc:
            remaining = exc.allowed_types
        except paramiko.AuthenticationException:
            if not t.is_active():
                raise LoginFailed(f"connection closed by the server during the key login of {who}") from None
            raise LoginFailed(
                f"{self._key_label}: the cluster refused the key for {who}; is its public key in "
                "~/.ssh/authorized_keys there (or registered in the site's key portal)?"
            ) from None
        except (paramiko.SSHException, EOFError, OSError):
            raise LoginFailed(f"connection closed by the server during the key login of {who}") from None
        if t.is_authenticated():
            return t
        if "keyboard-interactive" not in remaining:
            raise LoginFailed(
                f"{endpoint.host} wants {', '.join(remaining)} after the key; mlops supports a key, "
                "and a key plus keyboard-interactive (one-time code, optionally a password)"
            )
        if self.auth not in ("totp", "totp+password"):
            raise LoginFailed(
                f"{endpoint.host} asks for keyboard-interactive after the key but cluster.auth is "
                f'{self.auth!r}. Fix: set cluster.auth = "totp" (or "totp+password") in mlops.toml'
            )
        answerer = prompts.Answerer(self._codes_source, self._password, self.auth, endpoint.host)
        self.answerers.append(answerer)
        self.attempts += 1
        try:
            t.auth_interactive(endpoint.user, answerer)
        except Exception as exc:
            if answerer.stopped is not None:
                self.attempts -= 1  # nothing was typed
                raise answerer.stopped from None
            if isinstance(exc, (paramiko.AuthenticationException, paramiko.SSHException, EOFError, OSError)):
                if not t.is_active() or "EOF" in str(exc) or "shut down" in str(exc):
                    raise LoginFailed(
                        f"connection closed by the server during the keyboard-interactive login of "
                        f"{who} (after {len(answerer.answered)} answer(s)); not a refused code"
                    ) from None
                raise _Refused(answerer) from None
            raise
        if not t.is_authenticated():
            raise LoginFailed(f"login to {endpoint.host} not complete after key and keyboard-interactive")
        return t

    def _login_with_retry(self, endpoint: Endpoint, sock_factory):
        try:
            return self._login(endpoint, sock_factory())
        except _Refused as first:
            codes = self._codes
            if codes is None or not codes.retryable or CODE not in first.answerer.answered:
                raise self._refused_message(endpoint, first.answerer, retried=False) from None
            codes.refused()
            self._close_transports()
            self.notes.append("the first code was refused; retrying once with a later step's code")
            print(
                f"mlops: {endpoint.host} refused the one-time code (reused: another login of this account in the "
                "same 30 s step?); one retry with the next step's code",
                file=sys.stderr,
                flush=True,
            )
            try:
                return self._login(endpoint, sock_factory())
            except _Refused as second:
                raise self._refused_message(endpoint, second.answerer, retried=True) from None

    def _refused_message(self, endpoint: Endpoint, answerer, retried: bool) -> LoginFailed:
        who = f"{endpoint.user}@{endpoint.host}"
        codes = self._codes
        source = codes.source if codes is not None else "no code"
        also = (
            f" (or the password from {sources.describe(PASSWORD_VAR, self._env)} is wrong)"
            if prompts.PASSWORD in answerer.answered
            else ""
        )
        if codes is not None and codes.kind == "typed":
            return LoginFailed(
                f"the cluster refused the one-time code for {who} ({codes.source}){also}. Not retrying "
                "a typed code (repeated failures lock the account): a code works once and for about "
                "30-90 s. Fix: start the job again with a fresh code"
            )
        if retried:
            return LoginFailed(
                f"the cluster refused the one-time code for {who} twice: a code of the current step and "
                f"one of the next step, both computed from {source}{also}. That is most likely "
                "a wrong secret or a wrong clock on this machine (or a third login of this account "
                "within the same 30 s). Not retrying again "
                "(repeated failures lock the account). Fix: check the secret (mlops check-credentials) "
                "and the runner's clock (NTP)"
            )
        return LoginFailed(
            f"the cluster refused the login of {who} ({source}){also}. "
            "Not retrying (repeated failures lock the account)"
        )

    @property
    def _key_label(self) -> str:
        return keys.source(self._env, self._setting).label

    def open(self) -> Session:
        """Connect and log in (also what `with Session(...)` does)."""
        try:
            self._check_setup()
            if self._known is None:
                self._known, _ = load_known_hosts(self._env)
            if self._key is None:
                self._key = keys.load(self._env, self._setting)
            if self.jump:
                hop = self._login_with_retry(self.jump, lambda: None)
                target = (self.endpoint.host, self.endpoint.port)

                def through_jump():
                    try:
                        return hop.open_channel("direct-tcpip", target, ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT)
                    except Exception as exc:
                        raise LoginFailed(
                            f"the jump host {self.jump.host} cannot reach {target[0]}:{target[1]} "
                            f"({sources.sanitize(exc, 120)})"
                        ) from None

                self.transport = self._login_with_retry(self.endpoint, through_jump)
            else:
                self.transport = self._login_with_retry(self.endpoint, lambda: None)
            self.transport.set_keepalive(30)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        lost = exc is not None and _is_connection_error(exc) and not isinstance(exc, (BadInput, WorkFailed))
        active = self.transport is not None and self.transport.is_active()
        self.close()
        if lost:
            state = "was closed by the server" if not active else "failed"
            raise ConnectionLost(
                f"the connection to {self.endpoint.host} {state} during the command "
                f"({type(exc).__name__}: {sources.sanitize(exc, 200)})"
            ) from None

    def _close_transports(self) -> None:
        for t in reversed(self._transports):
            t.close()
        self._transports.clear()

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
            self._sftp = None
        self._close_transports()

    # ------------------------------------------------------------------ use
    @property
    def sftp(self) -> paramiko.SFTPClient:
        """paramiko SFTPClient on the session's connection (opened on first use)."""
        import paramiko

        if self._sftp is None:
            self._sftp = paramiko.SFTPClient.from_transport(self.transport)
        return self._sftp

    def run(
        self,
        command: str | list[str],
        stdin: bytes | None = None,
        timeout: float = 600,
        check: bool = True,
        stdout: Sink | None = None,
    ) -> tuple[int, str, str]:
        """Run a command on a new channel; secrets go in `stdin`. Returns (rc, stdout, stderr).

        With `stdout` (a binary file), output is streamed there instead of kept in memory. Raises
        RemoteError (rc != 0 with check, or a timeout) and ConnectionLost (the server went away).
        """
        import paramiko

        if isinstance(command, list):
            command = shlex.join(command)
        try:
            channel = self.transport.open_session(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(
                f"the connection to {self.endpoint.host} was closed by the server before "
                f"`{command[:80]}` ({sources.sanitize(exc, 120)})"
            ) from None
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
                if not self.transport.is_active():
                    raise ConnectionLost(
                        f"the connection to {self.endpoint.host} was closed by the server during `{command[:80]}`"
                    )
                if time.monotonic() > deadline:
                    raise RemoteError(f"remote command timed out after {timeout:.0f}s: {command[:200]}")
                if not got:
                    time.sleep(0.01)
            rc = channel.recv_exit_status()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(
                f"the connection to {self.endpoint.host} was lost during `{command[:80]}` "
                f"({sources.sanitize(exc, 120)})"
            ) from None
        finally:
            channel.close()
        if rc == -1:  # no exit status: killed by a signal, or the server is going away (wait briefly to tell)
            for _ in range(20):
                if not self.transport.is_active():
                    raise ConnectionLost(
                        f"the connection to {self.endpoint.host} was closed by the server during `{command[:80]}`"
                    )
                time.sleep(0.05)
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

    @contextmanager
    def hold(
        self, command: str | list[str], ready: bytes, stdin: bytes | None = None, timeout: float = 3600
    ) -> Iterator[None]:
        """Start `command`, wait for `ready` on its stdout, keep it running for the `with` block (mlops.remote)."""
        import paramiko

        if isinstance(command, list):
            command = shlex.join(command)
        try:
            channel = self.transport.open_session(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(
                f"the connection to {self.endpoint.host} was closed by the server before "
                f"`{command[:80]}` ({sources.sanitize(exc, 120)})"
            ) from None
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            seen = b""
            while ready not in seen:
                chunk = channel.recv(4096)
                if not chunk:
                    err = channel.recv_stderr(4096).decode(errors="replace")
                    raise RemoteError(f"`{command[:80]}` ended before it printed {ready.decode()!r}: {err[-500:]}")
                seen = (seen + chunk)[-(len(ready) + 4096) :]
            yield
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(
                f"the connection to {self.endpoint.host} was lost during `{command[:80]}` "
                f"({sources.sanitize(exc, 120)})"
            ) from None
        finally:
            channel.close()

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write a remote file created with `mode` from the start (0600: never readable by others)."""
        tmp = f"{path}.tmp{os.getpid()}"
        with self.sftp.open(tmp, "wb") as fh:
            fh.chmod(mode)
            fh.write(data)
        self.sftp.posix_rename(tmp, path)


CODE = prompts.CODE


class _Refused(Exception):
    """Internal: the server refused the keyboard-interactive answers of one connection."""

    def __init__(self, answerer):
        super().__init__("refused")
        self.answerer = answerer


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import paramiko
    except ImportError:
        return isinstance(exc, (EOFError, ConnectionError))
    return isinstance(exc, (EOFError, ConnectionError, socket.timeout, paramiko.SSHException))
