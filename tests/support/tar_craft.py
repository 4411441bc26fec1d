"""Hand-made tar.gz streams for the extractor's tests and benchmarks/bench_tar_headers.py.

Written block by block (POSIX.1-2001 / GNU tar header layout), so that a stream can hold what no
honest tar writes: one extended header (PAX 'x'/'g', GNU 'L'/'K') of hundreds of MiB, headers
chained without end, an old-GNU sparse member with endless extension blocks. The padding of a huge
header is zeros, so the stream compresses ~1000:1 (issue 17.5: 389 KB that unpack to 1.2 GiB).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator

BLOCK = 512


def header(name: str, kind: bytes, size: int, extended: bool = False) -> bytes:
    """One 512-byte ustar header block (mode 0600, uid/gid 0) with a valid checksum.

    `extended` sets the old-GNU sparse 'isextended' byte (offset 482), meaning that one more
    extension block follows.
    """
    block = bytearray(BLOCK)
    block[0:100] = name.encode()[:100].ljust(100, b"\0")
    block[100:108] = b"0000600\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = b"%011o\0" % size if size < 8**11 else b"\x80" + size.to_bytes(11, "big")
    block[136:148] = b"00000000000\0"
    block[156:157] = kind
    block[257:265] = b"ustar  \0"  # the GNU magic: tarfile then reads GNU fields (sparse, base-256)
    if extended:
        block[482] = 1
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def pax_record(key: str, value: bytes) -> bytes:
    """One PAX record `LEN key=value\\n` (LEN counts itself)."""
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def regular(name: str, data: bytes) -> bytes:
    """A regular member: header + data blocks."""
    return header(name, b"0", len(data)) + padded(data)


def huge_header(kind: bytes, size: int) -> Iterator[bytes]:
    """An extended header of `size` bytes: the header block, a valid first record, then zeros."""
    first = pax_record("comment", b"x") if kind in (b"x", b"g") else b"results/name\0"
    yield header("././@LongLink" if kind in (b"L", b"K") else "PaxHeader", kind, size)
    yield first
    left = -(-size // BLOCK) * BLOCK - len(first)
    chunk = bytes(1 << 20)
    while left > 0:
        yield chunk[: min(left, len(chunk))]
        left -= min(left, len(chunk))


def end() -> bytes:
    """The end of an archive: two zero blocks."""
    return bytes(2 * BLOCK)


def gzipped(pieces) -> bytes:
    """The pieces (bytes, or iterables of bytes) compressed as one gzip stream, chunk by chunk."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = io.BytesIO()
    for piece in pieces:
        for chunk in [piece] if isinstance(piece, bytes) else piece:
            out.write(comp.compress(chunk))
    out.write(comp.flush())
    return out.getvalue()
