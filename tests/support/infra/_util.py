"""Small helpers shared by the service classes: bounded waits, log tails, PID stops."""

import os
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path


class InfraError(RuntimeError):
    """A service could not be started/used; message carries the log tail."""


def log_tail(path, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file ('' if missing), for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(predicate, timeout: float, what: str, logs=(), interval: float = 0.2):
    """Poll ``predicate()`` until truthy; bounded, so a hung service fails fast.

    Returns the truthy value.  On timeout raises InfraError naming ``what`` and
    appending the tail of each file in ``logs``.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error
            last_exc = exc
        time.sleep(interval)
    msg = [f"timed out after {timeout:.0f}s waiting for {what}"]
    if last_exc is not None:
        msg.append(f"last error: {last_exc!r}")
    for log in logs:
        msg.append(f"--- tail of {log} ---\n{log_tail(log)}")
    raise InfraError("\n".join(msg))


def run(cmd, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with captured text output and an error that shows it."""
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and cp.returncode != 0:
        raise InfraError(
            f"command failed (rc={cp.returncode}): {cmd}\nstdout:\n{cp.stdout[-3000:]}\nstderr:\n{cp.stderr[-3000:]}"
        )
    return cp


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists": treat it as dead
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        return st.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children_of(pid: int):
    """PIDs whose parent is ``pid`` (read from /proc; no name matching)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        if int(st.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d))
    return out


def stop_pid(proc_or_pid, timeout: float = 10.0):
    """SIGTERM a process we started, wait (bounded), then SIGKILL.

    Accepts a Popen (reaped via wait) or a bare PID (e.g. from a pid file).
    """
    popen = proc_or_pid if isinstance(proc_or_pid, subprocess.Popen) else None
    pid = popen.pid if popen else int(proc_or_pid)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if popen is not None:
            try:
                popen.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if not pid_alive(pid):
            break
    if popen is not None and popen.poll() is None:
        popen.wait(5)


def shared_tmpdir(prefix: str) -> Path:
    """A fresh dir under /tmp that other users (slurm, munge, the ssh test
    user) can traverse.  pytest's tmp_path lives under /tmp/pytest-of-root
    (mode 0700), which daemons running as other users cannot enter, hence this.
    """
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def check_traversable(path) -> None:
    """Raise if some ancestor of ``path`` is not searchable by other users."""
    p = Path(path).resolve()
    for anc in [p, *p.parents]:
        mode = anc.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise InfraError(
                f"{anc} (mode {oct(mode & 0o777)}) is not traversable by other users, "
                f"so daemons running as slurm/munge/the test user cannot reach {p}; "
                f"use infra._util.shared_tmpdir() instead of pytest's tmp_path"
            )


class Service:
    """The context-manager protocol of the servers here: start on enter (a half-started service is
    stopped again, so it leaves no process or file behind), stop on exit. Subclasses say whether
    they already run."""

    def _started(self) -> bool:
        raise NotImplementedError

    def __enter__(self):
        if not self._started():
            try:
                self.start()
            except BaseException:
                self.stop()
                raise
        return self

    def __exit__(self, *exc):
        self.stop()
