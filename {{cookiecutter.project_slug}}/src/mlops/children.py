"""The research code's processes during `mlops run --local`: started, watched, and stopped as a whole.

Each background child runs in its own session, so it is the leader of its own process group: a
Ctrl-C in the terminal reaches only `mlops`, which then stops every child's WHOLE group (train.py and
what it started, e.g. W&B's service process or data-loader workers) with SIGTERM, and SIGKILL after
a grace period. A foreground child (`--config`) shares the terminal instead, so a debugger works.

`Stopper` turns SIGINT and SIGTERM into a flag that the runner's loop checks (no KeyboardInterrupt
in the middle of a write); a second signal asks for an immediate SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

GRACE_S = 10.0  # what a training script gets to save its state after SIGTERM, before SIGKILL
POLL_S = 0.2


class Child:
    """One running stage or configuration: `argv` in `cwd` with `env`, output into `log` (a new file)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], log: Path, name: str = ""):
        self.name, self.log, self.started = name, Path(log), time.time()
        with self.log.open("wb") as fh:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        return self.proc.poll()

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the child's process group (it may have exited already: then nothing happens)."""
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def stop_all(children: list[Child], urgent: Callable[[], bool] = lambda: False, grace_s: float = GRACE_S) -> None:
    """SIGTERM to every child's process group, wait up to `grace_s` (or until `urgent()`), then SIGKILL."""
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(c.poll() is None for c in children) and time.monotonic() < deadline and not urgent():
        time.sleep(POLL_S)
    for child in children:
        child.signal_group(signal.SIGKILL)  # also whatever the child left running in its group
        child.proc.wait()


class Stopper:
    """Context manager: SIGINT/SIGTERM set `signum` (the first) and `urgent` (a second one) instead of
    raising; the previous handlers come back on exit. Outside the main thread it does nothing (Python
    delivers signals to the main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.urgent = False
        self._saved: dict[int, object] = {}

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum
        else:
            self.urgent = True

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        """'Ctrl-C (SIGINT)', 'SIGTERM', or '' when no signal came."""
        if self.signum is None:
            return ""
        return "Ctrl-C (SIGINT)" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


def run_foreground(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Run `argv` attached to this terminal (a debugger, print output, Ctrl-C reach it directly) and
    return its exit code. Ctrl-C goes to the child, which decides; `mlops` ignores it meanwhile and
    passes SIGTERM on, as a shell does with its foreground job."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env)
    saved_int = (
        signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    )
    saved_term = (
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM)) if saved_int is not None else None
    )
    try:
        return proc.wait()
    finally:
        if saved_int is not None:
            signal.signal(signal.SIGINT, saved_int)
            signal.signal(signal.SIGTERM, saved_term)  # type: ignore[arg-type]
