"""One authenticated SSH connection per `mlops` command, shared by every transfer and remote command
(mlops.remote.Remote: run, python, write_file, sftp, hold).

Clusters refuse a reused one-time code and rate-limit logins, so a command logs in ONCE (login.py; enter
the Session before any slow local work: a typed code is only good for a minute or two) and multiplexes
channels over that paramiko Transport. Every command's output is framed (frame.py): what the login
shell's rc files print never reaches the caller. Anything secret a remote process needs travels on the
channel's stdin, never in argv.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import civars, options
from ..errors import BadInput, WorkFailed
from ..remote import ConnectionLost, RemoteError, Sink
from . import channels, keys, known_hosts, sources
from . import codes as codes_mod
from .endpoint import Endpoint
from .login import CONNECT_TIMEOUT, Login, LoginFailed

if TYPE_CHECKING:
    import paramiko

    from ..settings import Settings


def load_known_hosts(path: Path) -> known_hosts.KnownHosts:
    """Pinned host keys from `path` (the project's `.gitlab/known_hosts`, known_hosts.pinned_path(root));
    LoginFailed with the fix when it is missing or unreadable."""
    try:
        return known_hosts.load(path)
    except FileNotFoundError:
        raise LoginFailed(
            f"{path}: missing. The cluster's host key is pinned in the repository. Fix: create it with the "
            "line(s) of every cluster and jump host (OpenSSH known_hosts format; e.g. `ssh-keygen -F HOST` "
            "from a known_hosts you checked against the fingerprint the cluster publishes) and commit it"
        ) from None
    except OSError as exc:
        raise LoginFailed(f"{path}: cannot be read ({exc.strerror})") from None


class Session:
    """A logged-in connection; use as a context manager.

    `known`: the pinned host keys (a KnownHosts, or the path of a known_hosts file; from_settings gives
    the project's .gitlab/known_hosts). `code`: a mlops.ssh.codes.Codes, a callable returning one, or a
    typed code (default: codes.from_env at the first code prompt). `key`: a paramiko PKey (default:
    keys.load()). `password`: HPC_PASSWORD's value for cluster.auth "totp+password" (default: from env).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        auth: str = "totp",
        *,
        known: known_hosts.KnownHosts | Path | str,
        key: Any = None,
        jump: Endpoint | None = None,
        code: Any = None,
        ssh_key_setting: str | None = None,
        env: Mapping[str, str] | None = None,
        password: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.endpoint, self.auth, self.jump = endpoint, auth, jump
        self._known, self._key, self._code, self._setting = known, key, code, ssh_key_setting
        self._env = os.environ if env is None else env
        self._password, self._clock, self._sleep = password, clock, sleep
        self._codes: codes_mod.Codes | None = None
        self._sftp: Any = None
        self.login: Login | None = None
        self.transport: Any = None  # the logged-in paramiko Transport
        self.noise: list[str] = []  # what login shells printed before commands (dropped; for a verbose line)

    @classmethod
    def from_settings(cls, s: Settings) -> Session:
        """From typed settings (mlops.settings): s.cluster.{host, port, user, jump_host, auth, ssh_key},
        host keys from s.root/.gitlab/known_hosts."""
        c = s.cluster
        endpoint = Endpoint(str(c.host), int(c.port), str(c.user))
        jump = Endpoint.parse(c.jump_host, endpoint.user) if c.jump_host else None
        return cls(
            endpoint,
            str(c.auth),
            known=known_hosts.pinned_path(s.root),
            jump=jump,
            ssh_key_setting=str(c.ssh_key or "") or None,
        )

    # what the login spent and saw (tests and verbose lines)
    attempts = property(lambda self: self.login.attempts if self.login else 0)
    notes = property(lambda self: self.login.notes if self.login else [])
    answerers = property(lambda self: self.login.answerers if self.login else [])

    # ------------------------------------------------------------------ login
    def _codes_source(self) -> codes_mod.Codes:
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
        if self.auth not in options.AUTH_METHODS:
            raise BadInput(
                f"clusters.NAME.auth: {sources.sanitize(self.auth, 40)!r} is not one of "
                f"{', '.join(options.AUTH_METHODS)}. Fix: correct it in mlops.toml"
            )
        if self.auth == "totp+password" and self._password is None:
            self._password = self._env.get(civars.PASSWORD) or None
            if not self._password:
                raise BadInput(
                    f'clusters.NAME.auth is "totp+password" but {sources.describe(civars.PASSWORD, self._env)}. '
                    f"Fix: store the service password as the protected variable {civars.PASSWORD}"
                )
        if self.auth in options.TOTP_METHODS and self._code is None:
            self._codes_source()  # a missing or malformed code source is bad input: say so before connecting

    def open(self) -> Session:
        """Connect and log in (also what `with Session(...)` does)."""
        try:
            self._check_setup()
            known = self._known
            known = known if isinstance(known, known_hosts.KnownHosts) else load_known_hosts(Path(known))
            key = self._key if self._key is not None else keys.load(self._env, self._setting)
            self.login = Login(
                known,
                key,
                self.auth,
                self._codes_source,
                self._password,
                keys.source(self._env, self._setting).label,
                sources.describe(civars.PASSWORD, self._env),
                self._clock,
                self._sleep,
            )
            sock: Callable[[], Any] = lambda: None  # noqa: E731
            if self.jump:
                hop = self.login.open(self.jump, sock)
                sock = self._through(hop)
            self.transport = self.login.open(self.endpoint, sock)
            self.transport.set_keepalive(30)
        except BaseException:
            self.close()
            raise
        return self

    def _through(self, hop: Any) -> Callable[[], Any]:
        target = (self.endpoint.host, self.endpoint.port)

        def channel() -> Any:
            try:
                return hop.open_channel("direct-tcpip", target, ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT)
            except Exception as exc:
                raise LoginFailed(
                    f"the jump host {hop.getpeername()[0]} cannot reach {target[0]}:{target[1]} "
                    f"({sources.sanitize(exc, 120)})"
                ) from None

        return channel

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        lost = exc is not None and _is_connection_error(exc) and not isinstance(exc, (BadInput, WorkFailed))
        active = self.transport is not None and self.transport.is_active()
        self.close()
        if lost:
            state = "was closed by the server" if not active else "failed"
            raise ConnectionLost(
                f"the connection to {self.endpoint.host} {state} during the command "
                f"({type(exc).__name__}: {sources.sanitize(exc, 200)})"
            ) from None

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
            self._sftp = None
        if self.login is not None:
            self.login.close()

    # ------------------------------------------------------------------ channels (mlops.remote.Remote)
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
        """Run a command on a new channel, framed (frame.py); see mlops.remote.Remote.run."""
        command = shlex.join(command) if isinstance(command, list) else command
        rc, out, err, noise = channels.run(self.transport, self.endpoint, command, stdin, timeout, stdout)
        if noise:
            self.noise.append(f"{noise} bytes before `{command[:40]}`")
        if check and rc != 0:
            raise RemoteError(f"remote command failed (exit {rc}): {command[:300]}\n{err[-2000:]}")
        return rc, out, err

    def python(self, script: str, *args: str, timeout: float = 300) -> str:
        """Run a small python3 script on the login node (sent on stdin; nothing installed there)."""
        rc, out, err = self.run(["python3", "-", *args], stdin=script.encode(), timeout=timeout, check=False)
        if rc != 0:
            raise RemoteError(f"remote python3 failed (exit {rc}):\n{err[-2000:]}")
        return out

    def hold(
        self, command: str | list[str], ready: bytes, stdin: bytes | None = None, timeout: float = 3600
    ) -> AbstractContextManager[None]:
        """Start `command`, wait for `ready` on its framed stdout, keep it running for the `with` block."""
        command = shlex.join(command) if isinstance(command, list) else command
        return channels.hold(self.transport, self.endpoint, command, ready, stdin, timeout)

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write a remote file created with `mode` from the start (0600: never readable by others)."""
        tmp = f"{path}.tmp{os.getpid()}"
        with self.sftp.open(tmp, "wb") as fh:
            fh.chmod(mode)
            fh.write(data)
        self.sftp.posix_rename(tmp, path)


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import paramiko
    except ImportError:
        return isinstance(exc, (EOFError, ConnectionError))
    return isinstance(exc, (EOFError, ConnectionError, socket.timeout, paramiko.SSHException))
