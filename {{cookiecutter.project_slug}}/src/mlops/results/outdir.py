"""Where collect writes on this machine, never through a link (issue 17.4).

The repository collect runs in is not ours: a committed `results -> /elsewhere` link, or a link
at `results/<cluster>` or `results/<cluster>/collected.txt`, must not send the cluster's files
elsewhere. So every directory of an output path is opened component by component from a directory
file descriptor with O_NOFOLLOW|O_DIRECTORY, created with mkdirat where it is missing, and every file
is written to a fresh temp name (O_CREAT|O_EXCL|O_NOFOLLOW) in its directory's fd, then renamed over
the old name (a link there is replaced, never followed). No path is checked and then used: a link
that appears between the mkdir and the open of a component makes the open fail.

Anchor: a relative `--out` is walked from the working directory, an absolute one inside the project
from the project directory; links above the anchor (the runner's or the user's own layout, e.g.
/tmp -> /private/tmp) are followed, everything from the anchor down is not. An absolute `--out`
outside the project is walked from its deepest existing ancestor.

Disk full, a quota or a file-size limit on this machine (ENOSPC, EDQUOT, EFBIG) while writing is
`DiskFull`: a local error with the fix, never mistaken for a lost connection (issue 18.8).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from ..errors import BadInput, WorkFailed

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFull(WorkFailed):
    """No space, quota or file size left on this machine while writing results (exit 1)."""


def no_space(exc: OSError, where: object) -> DiskFull:
    """The DiskFull error for an OSError whose errno is in NO_SPACE, naming the local directory."""
    what = {errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}.get(
        exc.errno or 0, "no space left"
    )
    return DiskFull(
        f"no space left on the runner at {where} ({what}: {exc.strerror}); this is a local problem, the "
        "cluster and its run are fine and the run is not marked collected. Fix: free space on this machine "
        "(or give the CI job a larger disk or quota) and collect again, or lower the run's output "
        "(mlops.toml [collect] max_total_bytes caps what one collect keeps)"
    )


def _refused(shown: str, exc: OSError, dir_fd: int | None = None, name: str = "") -> BadInput:
    link = exc.errno == errno.ELOOP
    if not link and dir_fd is not None:  # O_NOFOLLOW|O_DIRECTORY on a link says ENOTDIR: look at it
        try:
            link = stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
        except OSError:
            pass
    why = "a symbolic link" if link else f"not a plain directory ({exc.strerror})"
    return BadInput(
        f"{shown} is {why}: collect writes only into plain directories it opens without following links "
        "(a committed or planted link must not send the cluster's files elsewhere). "
        "Fix: remove the link (e.g. `git rm` it) or give another --out"
    )


def subdir(dir_fd: int, name: str, shown: str = "", create: bool = True, mode: int = 0o755) -> int:
    """fd of the directory `name` in `dir_fd` (created with `mode` if missing), never through a link.

    `name` is one path component; raises BadInput (naming `shown`) when it is a link or not a directory,
    DiskFull when it cannot be created for lack of space.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not one path component: {name!r}")
    if create:
        try:
            os.mkdir(name, mode, dir_fd=dir_fd)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise no_space(exc, shown or name) from None
            raise _refused(shown or name, exc) from None
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refused(shown or name, exc, dir_fd, name) from None


def _walk(anchor_fd: int, parts: list[str], shown_base: str) -> int:
    """fd of anchor/parts..., each part opened (and created) by `subdir`; closes anchor_fd."""
    fd, shown = anchor_fd, shown_base
    try:
        for part in parts:
            shown = f"{shown}/{part}" if shown else part
            nxt = subdir(fd, part, shown)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_out(out: str | os.PathLike, project: str | os.PathLike | None = None) -> int:
    """fd of the output directory `out`, created as needed, no component from the anchor down a link.

    The anchor is the project directory (settings.Settings.root) or the working directory, whichever
    holds `out` (compared lexically: a link is never resolved), else the deepest existing directory
    above `out`. Raises BadInput for a link or a non-directory on the way, DiskFull for a full disk.
    """
    raw = os.fspath(out)
    absolute = os.path.normpath(os.path.join(os.getcwd(), raw))
    anchors = [f(a) for a in (project, os.getcwd()) if a is not None for f in (os.path.abspath, os.path.realpath)]
    base = next((a for a in anchors if (absolute + "/").startswith(a.rstrip("/") + "/")), None)
    if base is None:
        base = absolute
        while base != "/" and not _plain_dir(base):
            base = os.path.dirname(base)
    rest = [p for p in absolute[len(base) :].split("/") if p]
    shown = base if os.path.isabs(raw) else os.path.relpath(base)  # messages name what the user gave
    return _walk(os.open(base, DIR_FLAGS & ~os.O_NOFOLLOW), rest, "" if shown == "." else shown)


def _plain_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def write_file(dir_fd: int, name: str, data: bytes, mode: int = 0o644, shown: str = "") -> None:
    """Replace `name` in the directory `dir_fd` by `data`: a new temp file, then rename (a link named
    `name` is replaced, never written through). DiskFull (naming `shown`) when the disk is full."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    try:
        try:
            fd = os.open(tmp, NEW_FILE_FLAGS, mode, dir_fd=dir_fd)
        except FileExistsError:  # a random name: something else writes into this directory right now
            raise WorkFailed(
                f"{shown or name}: a file appeared at the temp name {tmp} before it was created; something "
                "else writes into this directory. Nothing was written through it. Fix: stop that, and collect again"
            ) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise no_space(exc, shown or name) from None
        raise


def write_all(out_dir: str | os.PathLike | int, files: dict[str, bytes], project: Path | None = None) -> None:
    """Write each name -> bytes into the directory `out_dir` (a path opened by `open_out`, or an fd)."""
    fd = out_dir if isinstance(out_dir, int) else open_out(out_dir, project)
    try:
        for name, data in files.items():
            write_file(fd, name, data, shown=f"{out_dir}/{name}" if not isinstance(out_dir, int) else name)
    finally:
        if not isinstance(out_dir, int):
            os.close(fd)
