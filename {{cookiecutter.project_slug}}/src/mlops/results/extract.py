"""Unpack the results stream as data: only regular files and directories, only below one directory.

The stream (tar, gzip-compressed) is read member by member (`tarfile` stream mode, never
`extractall`: its filters are not enough for untrusted archives, e.g. a link walking through links
extracted later, and `filter=` does not exist before Python 3.11.4). Every file and directory is
created through directory file descriptors (`openat`/`mkdirat` with O_NOFOLLOW and O_EXCL), so no
path is ever resolved through a link. Modes are ours (0700 directories, 0600 files). Skipped and
listed, the others kept: links of every kind, devices, FIFOs, sparse members, absolute or `..`
names, names with control characters or bytes that are not UTF-8, over-long names, files over
`max_file_bytes`, files that would pass `max_total_bytes`, members past `max_members`, names that
are not plain visible text (control, format, bidi or blank characters: text.visible), and top-level
names the caller did not allow. The decompressed stream is read at most `caps.max_stream_bytes`,
which stops a decompression bomb; no extended header is read past `caps.max_header_bytes`
(tarheaders.py). A full disk on this machine stops with outdir.DiskFull (a local error).
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from ..capped import CappedReader, StreamTooLarge
from ..settings import Collect
from . import caps as limits
from .outdir import NO_SPACE, no_space
from .tarheaders import REFUSED, HeaderRefused, capped_tarinfo
from .text import printable, visible

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20
NAME_KEPT = 1024  # characters of a member's name kept for the reports (a name may be a whole header)


@dataclass
class Extracted:
    """What one extraction did: counts, bytes written, each skipped member with its reason, why it stopped."""

    files: int = 0
    dirs: int = 0
    bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (member name as sent, reason): data lost
    refused: list[tuple[str, str]] = field(default_factory=list)  # links, devices, FIFOs: never data
    expected: list[str] = field(default_factory=list)  # links the caller expects (W&B's own): never created
    stopped: str | None = None  # set when the stream was not read to its end

    @property
    def complete(self) -> bool:
        """Every file that was sent was extracted (refused links etc. do not count: they are not data)."""
        return not self.skipped and self.stopped is None


def check_name(name: str, caps: Collect) -> tuple[list[str], str | None]:
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
    if not visible(name):
        bad = next(c for c in name if not visible(c))
        return [], f"name contains control characters or invisible Unicode (first: {printable(bad)})"
    if any(len(p.encode()) > 255 for p in parts):
        return [], "a name component is longer than 255 bytes"
    return parts, None


def _kind(member: tarfile.TarInfo) -> str | None:
    """Why a member that is not a plain file or directory is refused (None: it is one)."""
    if member.issym():
        return f"symbolic link (-> {printable(member.linkname, 200)}): links are never created"
    if member.islnk():
        return f"hard link (to {printable(member.linkname, 200)}): links are never created"
    if member.ischr() or member.isblk():
        return "device node: never created"
    if member.isfifo():
        return "FIFO: never created"
    if member.issparse():
        return "sparse member: not supported"
    if member.isdir() or member.isreg():
        return None
    return f"unsupported member type {printable(member.type)}"


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


class _Members:
    """The members of a tarfile stream, one at a time: tarfile keeps every member it read in
    `TarFile.members` (with its PAX records), which would grow with the stream; here it is emptied."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar

    def __iter__(self):
        while (member := self.tar.next()) is not None:
            self.tar.members.clear()
            yield member


def extract(
    stream: BinaryIO,
    root: int | str | os.PathLike,
    caps: Collect,
    top: Collection[str] | None = None,
    expected_link: Callable[[str, str], bool] | None = None,
    where: object = "",
) -> Extracted:
    """Unpack the gzip-compressed tar `stream` below the existing directory `root` (an fd, or a path
    whose last component is opened without following a link; made by the caller).

    `top`: the only top-level names kept (None: any). `expected_link(name, target)`: symbolic links
    it accepts are counted in `expected`, not `refused` (neither is ever created). Returns what was
    created and what was skipped; never raises for bad members or a broken stream (what came before
    the break is kept, `stopped` says why the rest is missing). Raises outdir.DiskFull (naming
    `where`) when this machine's disk or quota is full.
    """
    done = Extracted()
    root_fd = os.dup(root) if isinstance(root, int) else os.open(root, DIR_FLAGS)
    tree = _Tree(root_fd)
    members = 0
    try:
        capped = CappedReader(
            gzip.GzipFile(fileobj=stream, mode="rb"),
            limits.max_stream_bytes(caps),
            "the decompressed stream (max_total_bytes + headers)",
        )
        tarinfo = capped_tarinfo(caps)
        with tarfile.open(fileobj=cast(IO[bytes], capped), mode="r|", errorlevel=2, tarinfo=tarinfo) as tar:
            for member in _Members(tar):
                members += 1
                if members > caps.max_members:
                    done.stopped = f"more than max_members ({caps.max_members:,}) members: the rest was not read"
                    break
                _one(tar, member, tree, caps, done, top, expected_link)
    except (StreamTooLarge, HeaderRefused) as exc:
        done.stopped = f"{exc}: the rest of the stream was not read"
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise no_space(exc, where or root) from None
        done.stopped = _broken(members, exc)
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
        done.stopped = _broken(members, exc)  # a cut or corrupt stream: keep what came before
    finally:
        tree.close()
        os.close(root_fd)
    return done


def _broken(members: int, exc: Exception) -> str:
    # gzip.BadGzipFile is an OSError; tarfile raises ReadError for a header that does not parse
    return f"the stream is broken after {members:,} members ({type(exc).__name__}: {printable(exc, 200)})"


def _one(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    tree: _Tree,
    caps: Collect,
    done: Extracted,
    top: Collection[str] | None,
    expected_link: Callable[[str, str], bool] | None,
) -> None:
    name = member.name if len(member.name) <= NAME_KEPT else member.name[: NAME_KEPT - 3] + "..."
    parts, why = check_name(member.name, caps)
    kind = _kind(member)
    if getattr(member, REFUSED, None):
        done.skipped.append((name, getattr(member, REFUSED)))
        return
    if kind is not None:  # links, devices, FIFOs are not data: refused whatever their name
        if member.issym() and expected_link is not None and why is None and expected_link(name, member.linkname):
            done.expected.append(name)
        else:
            (done.skipped if member.issparse() else done.refused).append((name, kind))
        return
    if why is None and top is not None and parts[0] not in top:
        why = f"not part of a run directory (only {', '.join(sorted(top))} at the top)"
    if why is None and member.isreg():
        if member.size > caps.max_file_bytes:
            why = f"larger than max_file_bytes ({member.size:,} > {caps.max_file_bytes:,} bytes)"
        elif done.bytes + member.size > caps.max_total_bytes:
            why = f"would pass max_total_bytes ({caps.max_total_bytes:,} bytes)"
    if why is not None:
        done.skipped.append((name, why))
        return
    try:
        if member.isdir():
            tree.open_dir(parts)
            done.dirs += 1
        else:
            source = tar.extractfile(member)
            if source is None:  # a regular member always has a file object; be explicit for the reader
                raise tarfile.ReadError(f"{printable(member.name, 200)}: no data")
            done.bytes += _write_file(tree, parts, cast(BinaryIO, source))
            done.files += 1
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        done.skipped.append((name, f"clashes with an earlier member ({exc.strerror})"))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            done.skipped.append((name, "a parent is not a directory"))
        elif exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
            done.skipped.append((name, f"name refused by this file system ({exc.strerror})"))
        else:
            raise
