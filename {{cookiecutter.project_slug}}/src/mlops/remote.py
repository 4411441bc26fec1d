"""What the cluster rooms call on a logged-in session: the `Remote` protocol and its two errors.

`mlops.ssh.Session` implements it over one SSH connection; test stand-ins implement it on this
machine. cluster/, images/ and results/ type their session parameter as `Remote` and import nothing
from mlops.ssh. This module is a leaf: it imports only `mlops.errors`.

    rc, out, err = remote.run(["squeue", "-h", "-j", job_id], check=False)
    remote.run(f"bash -s -- {quoted_dir}", stdin=script, stdout=sink)   # stream a binary stdout
    remote.write_file(f"{run_dir}/state/jobs.json", data, 0o600)
    with remote.hold(["flock", lock, "sh", "-c", "echo locked; cat"], ready=b"locked"): ...

`run` returns exactly what the remote command printed: the session frames the output, so lines a
login shell's rc file prints (quota notices, `module` messages) never reach the caller.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from .errors import WorkFailed

if TYPE_CHECKING:
    import paramiko


class RemoteError(WorkFailed):
    """A remote command failed or timed out (exit 1); the message names the command and its stderr tail."""


class ConnectionLost(RemoteError):
    """The server closed the connection after the login (exit 1)."""


class Sink(Protocol):
    """Where a streamed stdout goes: a binary file, or any object with `write(bytes)`."""

    def write(self, data: bytes, /) -> object: ...


class Remote(Protocol):
    """A logged-in session on the cluster's login node."""

    def run(
        self,
        command: str | list[str],
        stdin: bytes | None = None,
        timeout: float = 600,
        check: bool = True,
        stdout: Sink | None = None,
    ) -> tuple[int, str, str]:
        """Run `command` (a shell line, or argv joined with shlex) in the account's login shell.

        Secrets go in `stdin`, never in the command. Returns (exit status, stdout, stderr) decoded as
        UTF-8 with replacement; with `stdout`, the raw stdout bytes are written there instead (and ""
        is returned for it). Raises RemoteError (exit status != 0 with `check`, or after `timeout`
        seconds) and ConnectionLost.
        """
        ...

    def python(self, script: str, *args: str, timeout: float = 300) -> str:
        """Run a small python3 `script` (sent on stdin) with `args`; its stdout, or RemoteError."""
        ...

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Create or replace the remote file `path` with `data`, created with `mode` from the start."""
        ...

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP client on the session's connection (bulk uploads with resume)."""
        ...

    def hold(
        self, command: str | list[str], ready: bytes, stdin: bytes | None = None, timeout: float = 3600
    ) -> AbstractContextManager[None]:
        """Start `command` and wait until its stdout shows `ready`; the command keeps running (e.g.
        holding a flock) until the `with` block ends, then its channel is closed. RemoteError when
        the command ends before printing `ready`."""
        ...
