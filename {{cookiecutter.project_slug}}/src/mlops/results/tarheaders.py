"""Tar headers read with a cap: no extended header is buffered beyond `caps.max_header_bytes` (issue 17.5).

`tarfile` reads an extended header whole before it looks at it: a PAX header ('x', 'g'), a GNU
long name or link ('L', 'K') of 1.2 GiB is one `read(1.2 GiB)` (and more than twice that in
memory while it is joined and parsed), although such a stream compresses to a few hundred KB.
Old-GNU sparse members ('S') chain extension blocks without end, and a PAX sparse 1.0 map is read
as one number per line until the count it declares. None of these is produced by the cluster side
(`tar -czf` in GNU format without --sparse writes 'L'/'K' for names over 100 bytes, at most
PATH_MAX each), so they are refused as follows, before tarfile reads their data:

  an extended header over the cap      skipped unread (discarded in 10 KiB reads); the member it
                                       belongs to is refused with the reason, the rest is kept
  global PAX headers over the cap in   the rest of the stream is not read (they apply to every
  total, or more than MAX_CHAINED_HEADERS extended headers in a row, or an endless sparse chain
                                       member after them)
  a sparse map (old GNU, PAX 1.0)      never kept: sparse members are refused anyway (extract.py)

The hook is `tarfile.TarInfo._proc_member`, which tarfile documents (in its source) as the entry
point a subclass overrides; `tarfile.open(tarinfo=...)` takes the subclass.
"""

from __future__ import annotations

import tarfile

from ..settings import Collect
from .caps import MAX_CHAINED_HEADERS, max_header_bytes

EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
MAX_SPARSE_BLOCKS = 64  # extension blocks of an old-GNU sparse member (21 regions each)
REFUSED = "mlops_refused"  # attribute of a TarInfo whose extended header was over the cap: the reason


class HeaderRefused(Exception):
    """The stream cannot be read on safely; str() says why (safe to print)."""


def _blocks(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def capped_tarinfo(caps: Collect) -> type[tarfile.TarInfo]:
    """A TarInfo subclass for `tarfile.open(..., tarinfo=...)` that enforces the caps of one stream.

    A refused member carries its reason in the attribute named by REFUSED; HeaderRefused is raised
    (out of the iteration of the TarFile) when the rest of the stream cannot be read safely.
    """
    limit = max_header_bytes(caps)
    state = {"chain": 0, "global": 0}

    class CappedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tar):  # noqa: ANN001 (tarfile's own signature)
            if self.type not in EXTENDED and self.type != tarfile.GNUTYPE_SPARSE:
                return super()._proc_member(tar)
            if state["chain"] >= MAX_CHAINED_HEADERS:
                raise HeaderRefused(f"more than {MAX_CHAINED_HEADERS} extended tar headers in a row")
            state["chain"] += 1
            try:
                if self.type == tarfile.XGLTYPE:
                    state["global"] += self.size
                    if state["global"] > limit:
                        raise HeaderRefused(
                            f"global PAX headers of {state['global']:,} bytes in all, over the cap of {limit:,}"
                        )
                if self.type in EXTENDED and self.size > limit:
                    return self._skip_header(tar)
                return super()._proc_member(tar)
            finally:
                state["chain"] -= 1

        def _skip_header(self, tar):  # noqa: ANN001
            """Discard the header's data unread, return the member it belongs to, marked refused."""
            tar.fileobj.seek(tar.fileobj.tell() + _blocks(self.size))  # stream mode: read and dropped
            try:
                member = self.fromtarfile(tar)
            except tarfile.HeaderError as exc:
                raise tarfile.ReadError(f"no member after an over-long extended header ({exc})") from None
            kind = self.type.decode("ascii", "replace")
            setattr(member, REFUSED, f"its extended tar header ('{kind}') is {self.size:,} bytes, over {limit:,}")
            return member

        def _proc_sparse(self, tar):  # noqa: ANN001
            """Old-GNU sparse: skip at most MAX_SPARSE_BLOCKS extension blocks, keep no map."""
            structs = getattr(self, "_sparse_structs", None)  # (regions, isextended, real size), from frombuf
            if structs is None:
                raise HeaderRefused("an old-GNU sparse member this Python's tarfile does not describe")
            _, extended, real_size = structs
            self._sparse_structs = None
            for _ in range(MAX_SPARSE_BLOCKS + 1):
                if not extended:
                    break
                block = tar.fileobj.read(tarfile.BLOCKSIZE)
                extended = len(block) == tarfile.BLOCKSIZE and bool(block[504])
            else:
                raise HeaderRefused(f"an old-GNU sparse member with more than {MAX_SPARSE_BLOCKS} extension blocks")
            self.sparse = []  # refused by the extractor as a sparse member; its regions are never needed
            self.offset_data = tar.fileobj.tell()
            tar.offset = self.offset_data + _blocks(self.size)
            self.size = real_size
            return self

        def _proc_gnusparse_10(self, next, pax_headers, tar):  # noqa: A002, ANN001 (tarfile's names)
            """PAX sparse 1.0: the map (count declared by the stream) is not read; the data is skipped."""
            next.sparse = []

    return CappedTarInfo
