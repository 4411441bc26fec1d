"""Commands on channels of a logged-in paramiko Transport, framed (frame.py): what Session.run and
Session.hold do (mlops.remote.Remote). Every channel runs `frame.wrap(command)`; stdout is filtered as a
byte stream, stderr cut after the run. A transport that goes away is ConnectionLost, a timeout or a shell
that never reaches the command RemoteError.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..remote import ConnectionLost, RemoteError, Sink
from . import sources
from .endpoint import Endpoint
from .frame import Frame
from .login import CONNECT_TIMEOUT


def _open(transport: Any, endpoint: Endpoint, command: str, frame: Frame, timeout: float) -> Any:
    import paramiko

    try:
        channel = transport.open_session(timeout=CONNECT_TIMEOUT)
        channel.settimeout(timeout)
        channel.exec_command(frame.wrap(command))
    except (paramiko.SSHException, EOFError, OSError, AttributeError) as exc:
        raise ConnectionLost(
            f"the connection to {endpoint.host} was closed by the server before "
            f"`{command[:80]}` ({sources.sanitize(exc, 120)})"
        ) from None
    return channel


def _lost(endpoint: Endpoint, command: str, exc: BaseException | None = None) -> ConnectionLost:
    if exc is None:
        return ConnectionLost(f"the connection to {endpoint.host} was closed by the server during `{command[:80]}`")
    return ConnectionLost(
        f"the connection to {endpoint.host} was lost during `{command[:80]}` ({sources.sanitize(exc, 120)})"
    )


def run(
    transport: Any, endpoint: Endpoint, command: str, stdin: bytes | None, timeout: float, stdout: Sink | None
) -> tuple[int, str, str, int]:
    """Run `command` (a shell line); returns (exit status, stdout, stderr, bytes of shell noise dropped).

    With `stdout`, the command's raw stdout goes there (and "" is returned for it). Raises RemoteError when
    the login shell never reached the command (no frame marker) or after `timeout` s, ConnectionLost.
    """
    import paramiko

    frame, out, err = Frame(), bytearray(), bytearray()
    unframe = frame.stdout(stdout.write if stdout is not None else out.extend)
    channel = _open(transport, endpoint, command, frame, timeout)
    try:
        if stdin is not None:
            channel.sendall(stdin)
        channel.shutdown_write()
        deadline = time.monotonic() + timeout
        while True:
            got = False
            while channel.recv_ready():
                unframe.write(channel.recv(1 << 16))
                got = True
            while channel.recv_stderr_ready():
                err.extend(channel.recv_stderr(1 << 16))
                got = True
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if not transport.is_active():
                raise _lost(endpoint, command)
            if time.monotonic() > deadline:
                raise RemoteError(f"remote command timed out after {timeout:.0f}s: {command[:200]}")
            if not got:
                time.sleep(0.01)
        rc = channel.recv_exit_status()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _lost(endpoint, command, exc) from None
    finally:
        channel.close()
    if rc == -1:  # no exit status: killed by a signal, or the server is going away (wait briefly to tell)
        for _ in range(20):
            if not transport.is_active():
                raise _lost(endpoint, command)
            time.sleep(0.05)
    unframe.close()
    error = frame.stderr(bytes(err)).decode(errors="replace")
    if not unframe.found:
        raise RemoteError(
            f"the login shell of {endpoint.who} did not start `{command[:80]}` (exit {rc}; its frame marker "
            f"never came): is the account's shell sh-compatible, and do its rc files exit?\n{error[-1000:]}"
        )
    return rc, out.decode(errors="replace"), error, unframe.noise


@contextmanager
def hold(
    transport: Any, endpoint: Endpoint, command: str, ready: bytes, stdin: bytes | None, timeout: float
) -> Iterator[None]:
    """Start `command`, wait until its framed stdout shows `ready`, keep it running for the `with` block."""
    import paramiko

    frame, seen = Frame(), bytearray()
    unframe = frame.stdout(seen.extend)
    channel = _open(transport, endpoint, command, frame, timeout)
    try:
        if stdin is not None:
            channel.sendall(stdin)
        while ready not in seen:
            chunk = channel.recv(4096)
            if not chunk:
                err = frame.stderr(channel.recv_stderr(1 << 16)).decode(errors="replace")
                raise RemoteError(f"`{command[:80]}` ended before it printed {ready.decode()!r}: {err[-500:]}")
            unframe.write(chunk)
            del seen[: -len(ready) - 4096]
        yield
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _lost(endpoint, command, exc) from None
    finally:
        channel.close()
