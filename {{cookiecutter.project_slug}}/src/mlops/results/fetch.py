"""The download: the run's results as one capped tar.gz stream over the SSH session.

The cluster side is `send_results.sh` (package data, run with `bash -s`); nothing it sends is
trusted: the stream goes to a temp file of at most `caps.max_stream_bytes` compressed bytes in a
directory collect created (through its fd), and `extract.extract` reads it member by member. A full
disk on this machine is outdir.DiskFull, raised from inside the session's read loop: it is not an
OSError, so the session never takes it for a lost connection (issue 18.8).
"""

from __future__ import annotations

import os
import shlex
from importlib import resources
from typing import BinaryIO

from ..errors import WorkFailed
from ..remote import Remote
from ..settings import Collect
from . import caps as limits
from .outdir import NEW_FILE_FLAGS, NO_SPACE, no_space

TOO_LARGE = "MLOPS-TOO-LARGE "


class _CappedWriter:
    """The session writes the remote stdout here; past `limit` bytes it stops the download."""

    def __init__(self, out: BinaryIO, limit: int, where: object):
        self.out, self.limit, self.count, self.where = out, limit, 0, where

    def write(self, chunk: bytes) -> int:
        self.count += len(chunk)
        if self.count > self.limit:
            raise WorkFailed(
                f"the results stream passed {self.limit:,} compressed bytes (max_total_bytes + "
                "headers): stopped; lower the output of the model or raise [collect] max_total_bytes"
            )
        try:
            return self.out.write(chunk)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise no_space(exc, self.where) from None
            raise


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


def download(
    session: Remote, run_dir: str, dir_fd: int, name: str, caps: Collect, where: object = ""
) -> tuple[int, list[tuple[str, str]]]:
    """Write the compressed stream of `run_dir` to the new file `name` in the directory `dir_fd`;
    returns (bytes, files not sent).

    `name` is created with O_EXCL|O_NOFOLLOW (it must not exist). Raises WorkFailed when the run
    directory cannot be read or sends nothing, outdir.DiskFull (naming `where`) when this machine's
    disk is full.
    """
    fd = os.open(name, NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as fh:  # the last buffered bytes are written at close: inside the try
            stream_cap = limits.max_stream_bytes(caps)
            writer = _CappedWriter(fh, stream_cap + stream_cap // 100, where)
            command = f"bash -s -- {shlex.quote(run_dir)} {int(caps.max_file_bytes)}"
            rc, _, err = session.run(command, stdin=script(), stdout=writer, check=False, timeout=3600)
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise no_space(exc, where) from None
        raise
    if rc == 3:
        raise WorkFailed(f"cannot enter {run_dir} on the cluster")
    if rc == 4:
        raise WorkFailed(f"{run_dir} holds no results yet (no run.json, envs/index.json, state/ or results/)")
    if rc not in (0, 1):  # 1: a file changed while read (a task still writing): fine for partial results
        msg = err.replace("\0", "\n").strip()[-1000:]
        raise WorkFailed(f"downloading {run_dir} failed (exit {rc}): {msg}")
    return writer.count, too_large(err)
