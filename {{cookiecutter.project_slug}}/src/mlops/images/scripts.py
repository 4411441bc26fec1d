"""The cluster side of the images room: package shell files (store.sh, convert.sh) run on the login
node from stdin, so nothing has to be installed there and nothing but arguments is on the command line."""

from __future__ import annotations

import shlex
from contextlib import AbstractContextManager
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..remote import Remote

SCRIPTS = ("store.sh", "convert.sh")
# bash reads the script from the first LENGTH bytes of stdin (the rest stays the script's stdin):
# `bash -c SCRIPT` would put the whole script on the command line.
_LOADER = 'script=$(head -c "$1"); shift; bash -c "$script" "$@"'


def text(name: str) -> bytes:
    """The bytes of one of SCRIPTS (package data)."""
    if name not in SCRIPTS:
        raise ValueError(f"no images script {name!r}")
    return resources.files(__package__).joinpath(name).read_bytes()


def command(name: str, *args: str) -> str:
    """The remote command line that runs script `name` with `args` (send `text(name)` first on stdin)."""
    return shlex.join(["bash", "-c", _LOADER, "loader", str(len(text(name))), name, *args])


def run(
    session: Remote, name: str, *args: str, stdin: bytes = b"", timeout: float = 3600, check: bool = True
) -> tuple[int, str, str]:
    """Run script `name` with `args` on the cluster; (exit status, stdout, stderr). RemoteError with `check`."""
    return session.run(command(name, *args), stdin=text(name) + stdin, timeout=timeout, check=check)


def hold(session: Remote, name: str, *args: str, ready: bytes) -> AbstractContextManager[None]:
    """Run script `name` and keep it running (its channel open) for a `with` block once it printed `ready`."""
    return session.hold(["bash", "-c", _LOADER, "loader", str(len(text(name))), name, *args], ready=ready,
                        stdin=text(name))  # fmt: skip
