"""The download: the run's results as one capped tar.gz stream over the SSH session.

The cluster side is `send_results.sh` (package data, run with `bash -s`); nothing it sends is
trusted: the stream goes to a temp file of at most `Caps.max_stream_bytes` compressed bytes in a
directory collect created, and `extract.extract` reads it member by member.
"""

from __future__ import annotations

import os
import shlex
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from ..errors import WorkFailed
from ..remote import Remote
from .caps import Caps

TOO_LARGE = "MLOPS-TOO-LARGE "


class _CappedWriter:
    """The session writes the remote stdout here; past `limit` bytes it stops the download."""

    def __init__(self, out: BinaryIO, limit: int):
        self.out, self.limit, self.count = out, limit, 0

    def write(self, chunk: bytes) -> int:
        self.count += len(chunk)
        if self.count > self.limit:
            raise WorkFailed(
                f"the results stream passed {self.limit:,} compressed bytes (max_total_bytes + "
                "headers): stopped; lower the output of the model or raise [collect] max_total_bytes"
            )
        return self.out.write(chunk)


def script() -> bytes:
    """The cluster side, as bytes for `bash -s`."""
    return resources.files(__package__).joinpath("send_results.sh").read_bytes()


def too_large(stderr: str) -> list[tuple[str, str]]:
    """(name, reason) for each file the cluster did not send because of max_file_bytes."""
    out = []
    for piece in stderr.split("\0"):
        at = piece.rfind(TOO_LARGE)
        if at < 0:
            continue
        size, _, name = piece[at + len(TOO_LARGE) :].partition(" ")
        reason = f"larger than max_file_bytes ({size} bytes): not sent by the cluster"
        out.append((name, reason if size.isdigit() else "larger than max_file_bytes: not sent by the cluster"))
    return out


def download(session: Remote, run_dir: str, into: Path, caps: Caps) -> tuple[int, list[tuple[str, str]]]:
    """Write the compressed stream of `run_dir` to the new file `into`; returns (bytes, files not sent).

    `into` is created with O_EXCL|O_NOFOLLOW (it must not exist). Raises WorkFailed when the run
    directory cannot be read or sends nothing.
    """
    fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        writer = _CappedWriter(fh, caps.max_stream_bytes + caps.max_stream_bytes // 100)
        command = f"bash -s -- {shlex.quote(run_dir)} {int(caps.max_file_bytes)}"
        rc, _, err = session.run(command, stdin=script(), stdout=writer, check=False, timeout=3600)
    if rc == 3:
        raise WorkFailed(f"cannot enter {run_dir} on the cluster")
    if rc == 4:
        raise WorkFailed(f"{run_dir} holds no results yet (no run.json, envs/index.json, state/ or results/)")
    if rc not in (0, 1):  # 1: a file changed while read (a task still writing): fine for partial results
        msg = err.replace("\0", "\n").strip()[-1000:]
        raise WorkFailed(f"downloading {run_dir} failed (exit {rc}): {msg}")
    return writer.count, too_large(err)
