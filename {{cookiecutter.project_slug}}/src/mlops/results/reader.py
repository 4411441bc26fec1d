"""Read-only access below one directory of untrusted files, never through a link.

Every file is opened relative to the directory's fd, component by component, with O_NOFOLLOW, and
must be a regular file (no link, FIFO or device is ever opened for reading; O_NONBLOCK so that a
FIFO swapped in after the check cannot block); reads are capped. JSON is decoded as strict UTF-8,
and parse errors of every kind (bad UTF-8, a 5,000-digit integer, 100k-deep nesting) are
`Unreadable` with the reason.
"""

from __future__ import annotations

import json
import os
import stat

from .text import printable, tail

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Unreadable(Exception):
    """A file of the run cannot be used; str() is the reason (safe to print)."""


class RunReader:
    """Read-only access below one run directory, never through a link. Use as a context manager.

    `run` is a directory fd (duplicated: the caller keeps its own) or a path whose last component is
    opened with O_NOFOLLOW.
    """

    def __init__(self, run: int | str | os.PathLike):
        self.fd = os.dup(run) if isinstance(run, int) else os.open(run, DIR_FLAGS)

    def __enter__(self):  # -> Self (typing.Self is 3.11+, as is this project)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _walk(self, rel: str) -> tuple[int, str]:
        """(fd of the parent directory, leaf name) of `rel`; the caller closes the fd."""
        parts = [p for p in rel.split("/") if p]
        fd = os.dup(self.fd)
        try:
            for part in parts[:-1]:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError:
            os.close(fd)
            raise
        return fd, parts[-1]

    def read(self, rel: str, max_bytes: int, tail: bool = False) -> bytes | None:
        """The bytes of the regular file `rel` (None if absent); at most max_bytes: the end of it when
        `tail`, else Unreadable if longer. Unreadable for a link, FIFO, device or directory."""
        try:
            parent, leaf = self._walk(rel)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unreadable(f"{rel}: a parent is not a plain directory ({exc.strerror})") from None
        try:
            try:
                st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return None
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(f"{rel}: not a regular file ({_kind(st.st_mode)})")
            fd = os.open(leaf, FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise Unreadable(f"{rel}: cannot open ({exc.strerror})") from None
        finally:
            os.close(parent)
        with os.fdopen(fd, "rb") as fh:
            st2 = os.fstat(fh.fileno())
            if not stat.S_ISREG(st2.st_mode) or (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
                raise Unreadable(f"{rel}: replaced while read")
            if tail:
                fh.seek(max(0, st2.st_size - max_bytes))
                return fh.read(max_bytes)
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise Unreadable(f"{rel}: larger than {max_bytes:,} bytes")
        return data

    def json(self, rel: str, max_bytes: int) -> object:
        """The JSON document in `rel` (None if absent); Unreadable with the reason otherwise."""
        data = self.read(rel, max_bytes)
        if data is None:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable(f"{rel}: not UTF-8") from None
        try:
            return json.loads(text)
        except RecursionError:
            raise Unreadable(f"{rel}: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and ints longer than Python's int-string limit
            raise Unreadable(f"{rel}: not valid JSON ({printable(exc, 120)})") from None

    def listdir(self, rel: str) -> list[str]:
        """Names in the directory `rel` ([] if absent or not a plain directory)."""
        try:
            parent, _ = self._walk(rel + "/.")
        except OSError:
            return []
        try:
            return os.listdir(parent)
        finally:
            os.close(parent)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def file_tail(path: str | os.PathLike, max_bytes: int, max_lines: int, width: int = 0) -> str:
    """The last `max_lines` lines of the log file `path`, reading at most its last `max_bytes` bytes (logs
    may be huge), as text.tail makes them printable; "" when the file does not exist. The log was
    written by research code: it is opened without following a link and must be a regular file (else
    the text says why)."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    try:
        with RunReader(folder or ".") as reader:
            data = reader.read(name, max_bytes, tail=True)
    except FileNotFoundError:
        return ""
    except (OSError, Unreadable) as exc:
        return f"({name}: {exc})"
    return tail(data or b"", max_bytes, max_lines, width)
