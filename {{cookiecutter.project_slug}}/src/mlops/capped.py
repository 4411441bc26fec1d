"""A read-only stream with a cap on the bytes it gives: where a decompression bomb from the cluster ends.

Used under tarfile's stream mode (`mode="r|"`) for everything the cluster sends as tar.gz: the state of
a run (cluster.reader) and a run's results (results.extract).
"""

from __future__ import annotations

import gzip
from typing import IO


class StreamTooLarge(OSError):
    """The stream passed its cap. An OSError, so that a reader that treats a cut stream as one keeps
    what came before."""


class CappedReader:
    """`read()` of `raw` that raises StreamTooLarge once more than `limit` bytes came in total.

    `what` names the stream in the message, e.g. "the state stream". One byte past the cap is read
    to tell "exactly the cap" from "more".
    """

    def __init__(self, raw: IO[bytes] | gzip.GzipFile, limit: int, what: str = "the stream"):
        self.raw, self.limit, self.what, self.count = raw, limit, what, 0

    def read(self, size: int = -1) -> bytes:
        room = self.limit - self.count + 1
        data = self.raw.read(room if size is None or size < 0 else min(size, room))
        self.count += len(data)
        if self.count > self.limit:
            raise StreamTooLarge(f"{self.what} passed {self.limit:,} bytes")
        return data
