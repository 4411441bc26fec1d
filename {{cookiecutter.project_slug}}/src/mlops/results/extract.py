"""Unpack the results stream as data: only regular files and directories, only below one directory.

The stream (tar, gzip-compressed) is read member by member (`tarfile` stream mode, never
`extractall`: its filters are not enough for untrusted archives, e.g. a link walking through links
extracted later, and `filter=` does not exist before Python 3.11.4). Every file and directory is
created through directory file descriptors (`openat`/`mkdirat` with O_NOFOLLOW and O_EXCL), so no
path is ever resolved through a link. Modes are ours (0700 directories, 0600 files). Skipped and
listed, the others kept: links of every kind, devices, FIFOs, sparse members, absolute or `..`
names, names with control characters or bytes that are not UTF-8, over-long names, files over
`max_file_bytes`, files that would pass `max_total_bytes`, members past `max_members`. The
decompressed stream is read at most `Caps.max_stream_bytes`, which stops a decompression bomb.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from .caps import DEFAULT, Caps

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20


class StreamTooLarge(Exception):
    """The decompressed stream passed Caps.max_stream_bytes."""


@dataclass
class Extracted:
    """What one extraction did: counts, bytes written, each skipped member with its reason, why it stopped."""

    files: int = 0
    dirs: int = 0
    bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member name as sent, reason): data lost
    refused: list[tuple[str, str]] = field(default_factory=list)  # links, devices, FIFOs: never data
    stopped: str | None = None  # set when the stream was not read to its end

    @property
    def complete(self) -> bool:
        """Every file that was sent was extracted (refused links etc. do not count: they are not data)."""
        return not self.skipped and self.stopped is None


class _Capped:
    """A read-only file object that refuses to give more than `limit` bytes in total."""

    def __init__(self, raw: IO[bytes], limit: int):
        self.raw, self.limit, self.count = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        want = self.limit - self.count + 1 if size is None or size < 0 else min(size, self.limit - self.count + 1)
        data = self.raw.read(want)
        self.count += len(data)
        if self.count > self.limit:
            raise StreamTooLarge(f"the decompressed stream passed {self.limit:,} bytes (max_total_bytes + headers)")
        return data


def check_name(name: str, caps: Caps) -> tuple[list[str], str | None]:
    """The path components of a member name, or the reason it is refused."""
    if "\0" in name:
        return [], "name contains a NUL byte"
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:  # surrogateescape'd bytes: the name is not UTF-8
        return [], "name is not UTF-8"
    if len(raw) > caps.max_path_length:
        return [], f"name longer than max_path_length ({len(raw):,} > {caps.max_path_length:,} bytes)"
    if name.startswith("/"):
        return [], "absolute name"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        return [], "empty name"
    if ".." in parts:
        return [], "name contains '..'"
    if any(c < " " or c == "\x7f" or "\x80" <= c <= "\x9f" for c in name):
        return [], "name contains control characters"
    if any(len(p.encode()) > 255 for p in parts):
        return [], "a name component is longer than 255 bytes"
    return parts, None


def _kind(member: tarfile.TarInfo) -> str | None:
    """Why a member that is not a plain file or directory is refused (None: it is one)."""
    if member.issym():
        return f"symbolic link (-> {member.linkname[:200]!r}): links are never created"
    if member.islnk():
        return f"hard link (to {member.linkname[:200]!r}): links are never created"
    if member.ischr() or member.isblk():
        return "device node: never created"
    if member.isfifo():
        return "FIFO: never created"
    if member.issparse():
        return "sparse member: not supported"
    if member.isdir() or member.isreg():
        return None
    return f"unsupported member type {member.type!r}"


class _Tree:
    """Directory fds below the root, for the current directory of the stream (members come grouped)."""

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self.chain: list[tuple[str, int]] = []

    def open_dir(self, parts: list[str], create: bool = True) -> int:
        """fd of the directory root/parts..., created (0700) as needed; never through a link."""
        keep = 0
        while keep < min(len(parts), len(self.chain)) and self.chain[keep][0] == parts[keep]:
            keep += 1
        for _, fd in self.chain[keep:]:
            os.close(fd)
        del self.chain[keep:]
        for part in parts[keep:]:
            parent = self.chain[-1][1] if self.chain else self.root_fd
            if create:
                try:
                    os.mkdir(part, 0o700, dir_fd=parent)
                except FileExistsError:
                    pass
            self.chain.append((part, os.open(part, DIR_FLAGS, dir_fd=parent)))
        return self.chain[-1][1] if self.chain else self.root_fd

    def close(self) -> None:
        for _, fd in self.chain:
            os.close(fd)
        self.chain = []


def _write_file(tree: _Tree, parts: list[str], source: BinaryIO) -> int:
    """Create root/parts as a new regular file (0600) and copy `source` into it; returns bytes written."""
    parent = tree.open_dir(parts[:-1])
    leaf = parts[-1]
    try:
        fd = os.open(leaf, FILE_FLAGS, 0o600, dir_fd=parent)
    except FileExistsError:  # the same name twice in the stream: the later one wins, as with tar
        if stat.S_ISDIR(os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mode):
            raise IsADirectoryError(errno.EISDIR, "exists as a directory") from None
        os.unlink(leaf, dir_fd=parent)
        fd = os.open(leaf, FILE_FLAGS, 0o600, dir_fd=parent)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            written += len(chunk)
    return written


def extract(stream: BinaryIO, root: str | os.PathLike, caps: Caps = DEFAULT) -> Extracted:
    """Unpack the gzip-compressed tar `stream` below the existing directory `root` (made by the caller).

    Returns what was created and what was skipped (never raises for bad members or a broken stream:
    what came before the break is kept, `stopped` says why the rest is missing).
    """
    done = Extracted()
    root_fd = os.open(root, DIR_FLAGS)
    tree = _Tree(root_fd)
    members = 0
    try:
        capped = _Capped(cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb")), caps.max_stream_bytes)
        with tarfile.open(fileobj=cast(IO[bytes], capped), mode="r|", errorlevel=2) as tar:
            for member in tar:
                members += 1
                if members > caps.max_members:
                    done.stopped = f"more than max_members ({caps.max_members:,}) members: the rest was not read"
                    break
                _one(tar, member, tree, caps, done)
    except StreamTooLarge as exc:
        done.stopped = str(exc)
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
        # a cut or corrupt stream (gzip.BadGzipFile is an OSError): keep what came before
        done.stopped = f"the stream is broken after {members:,} members ({type(exc).__name__}: {str(exc)[:200]})"
    finally:
        tree.close()
        os.close(root_fd)
    return done


def _one(tar: tarfile.TarFile, member: tarfile.TarInfo, tree: _Tree, caps: Caps, done: Extracted) -> None:
    parts, why = check_name(member.name, caps)
    kind = _kind(member)
    if kind is not None:  # links, devices, FIFOs are not data: refused whatever their name
        (done.skipped if member.issparse() else done.refused).append((member.name, kind))
        return
    if why is None and member.isreg():
        if member.size > caps.max_file_bytes:
            why = f"larger than max_file_bytes ({member.size:,} > {caps.max_file_bytes:,} bytes)"
        elif done.bytes + member.size > caps.max_total_bytes:
            why = f"would pass max_total_bytes ({caps.max_total_bytes:,} bytes)"
    if why is not None:
        done.skipped.append((member.name, why))
        return
    try:
        if member.isdir():
            tree.open_dir(parts)
            done.dirs += 1
        else:
            source = tar.extractfile(member)
            if source is None:  # a regular member always has a file object; be explicit for the reader
                raise tarfile.ReadError(f"{member.name!r}: no data")
            done.bytes += _write_file(tree, parts, cast(BinaryIO, source))
            done.files += 1
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        done.skipped.append((member.name, f"clashes with an earlier member ({exc.strerror})"))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            done.skipped.append((member.name, "a parent is not a directory"))
        elif exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
            done.skipped.append((member.name, f"name refused by this file system ({exc.strerror})"))
        else:
            raise
