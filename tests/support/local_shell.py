"""The cluster side of `mlops collect` on this machine: mlops.ssh.session.Session's run()/python()
without the SSH hop (the commands collect sends to the login node run in a local bash / python3).

`LocalShell(env)` streams stdout to `stdout=` like the SSH channel does. `SessionLike(env)` also
turns an OSError raised inside the read loop into ConnectionLost, as Session.run does for a channel
error: it shows what a local error that is an OSError would look like to the user (issue 18.8).
"""

from __future__ import annotations

import os
import subprocess

from mlops import remote as transport


class LocalShell:
    def __init__(self, env: dict):
        self.env = env

    def run(self, command, stdin=None, timeout=600, check=True, stdout=None):
        argv = command if isinstance(command, list) else ["bash", "-c", command]
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env
        )
        proc.stdin.write(stdin or b"")
        proc.stdin.close()
        data = b""
        try:
            while chunk := proc.stdout.read(1 << 16):
                if stdout is not None:
                    stdout.write(chunk)
                else:
                    data += chunk
        finally:
            proc.stdout.close()
            err = proc.stderr.read()
            proc.stderr.close()
            rc = proc.wait(timeout)
        if check and rc:
            raise RuntimeError(err.decode(errors="replace"))
        return rc, data.decode(errors="replace"), err.decode(errors="replace")

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def python(self, script, *args, timeout=300):
        rc, out, err = self.run(["python3", "-", *args], stdin=script.encode(), check=False)
        if rc:  # as mlops.ssh.session.Session.python does
            raise transport.RemoteError(f"remote python3 failed (exit {rc}):\n{err[-500:]}")
        return out


class SessionLike(LocalShell):
    def run(self, command, stdin=None, timeout=600, check=True, stdout=None):
        try:
            return super().run(command, stdin, timeout, check, stdout)
        except OSError as exc:  # Session.run: except (paramiko.SSHException, EOFError, OSError)
            lost = f"the connection to localhost was lost during `{command[:80]}` ({exc})"
            raise transport.ConnectionLost(lost) from None
