"""Output framing: what a remote command printed, without what the login shell printed before it.

sshd runs every command through the account's login shell, which reads its rc files first; on clusters
they print (quota notices, `module` messages, banners) to stdout and stderr. So each command is sent as

    printf '%s\\n' MLOPS-FRAME-<32 random hex>; printf '%s\\n' MLOPS-FRAME-<...> >&2; <command>

and everything up to and including the first marker line is dropped from each stream. The marker is
new for every command (nothing the rc files print can contain it), the command runs in the same shell
after the rc files (their environment, e.g. `module load`, stays in effect), and stdout is filtered as
a byte stream (binary downloads pass unchanged, at any chunk boundary). Needs a login shell that
understands `printf`, `;` and `>&2` (sh, bash, zsh, ksh, fish; csh-family shells are not supported).
Not covered: output an rc file prints AFTER the command (an EXIT trap), which no login shell does by
default.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

PREFIX = "MLOPS-FRAME-"
NOISE_KEPT = 200  # bytes of dropped shell output kept for a verbose note (never returned as output)


class Frame:
    """One command's frame: `wrap()` the command, feed stdout through `stdout()`, cut stderr with `stderr()`."""

    def __init__(self) -> None:
        self.marker = f"{PREFIX}{secrets.token_hex(16)}"
        self._tag = (self.marker + "\n").encode()

    def wrap(self, command: str) -> str:
        """The command line to send: both markers, then `command` unchanged."""
        return f"printf '%s\\n' {self.marker}; printf '%s\\n' {self.marker} >&2; {command}"

    def stdout(self, sink: Callable[[bytes], object]) -> Unframe:
        """A writer for the raw stdout stream that passes only the command's bytes on to `sink`."""
        return Unframe(self._tag, sink)

    def stderr(self, raw: bytes) -> bytes:
        """The command's stderr: what follows the first marker line (all of it if there is none)."""
        at = raw.find(self._tag)
        return raw if at < 0 else raw[at + len(self._tag) :]


class Unframe:
    """Streaming filter: drops everything up to the first marker line, then passes bytes through."""

    def __init__(self, tag: bytes, sink: Callable[[bytes], object]):
        self._tag, self._sink = tag, sink
        self._pending = bytearray()
        self.found = False
        self.noise = 0  # bytes the login shell printed before the command
        self.noise_head = b""  # the first NOISE_KEPT of them (for a verbose note)

    def write(self, data: bytes) -> None:
        if self.found:
            if data:
                self._sink(data)
            return
        self._pending += data
        at = self._pending.find(self._tag)
        if at < 0:
            keep = len(self._tag) - 1  # a marker may be split across chunks
            if len(self._pending) > keep:
                self._drop(bytes(self._pending[:-keep]))
                del self._pending[:-keep]
            return
        self._drop(bytes(self._pending[:at]))
        rest = bytes(self._pending[at + len(self._tag) :])
        self._pending.clear()
        self.found = True
        if rest:
            self._sink(rest)

    def _drop(self, noise: bytes) -> None:
        if len(self.noise_head) < NOISE_KEPT:
            self.noise_head += noise[: NOISE_KEPT - len(self.noise_head)]
        self.noise += len(noise)

    def close(self) -> None:
        """At the end of the stream: what never reached the marker is shell output, not the command's."""
        if not self.found:
            self._drop(bytes(self._pending))
            self._pending.clear()
