"""The refused render stops its cookiecutter/cruft parent with a signal the parent does not ignore
(issue 19: one message, no traceback), also when the parent was started in the background by a
non-interactive shell, which ignores SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys

from mlops import retry_answers

SLEEPER = [sys.executable, "-c", "import sys; sys.stdin.read()"]


def _child(ignore: tuple[signal.Signals, ...]) -> subprocess.Popen:
    def setup() -> None:
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)

    return subprocess.Popen(SLEEPER, stdin=subprocess.PIPE, preexec_fn=setup)


def _signal_for(ignore: tuple[signal.Signals, ...]) -> signal.Signals | None:
    child = _child(ignore)
    try:
        return retry_answers._stop_signal(child.pid)
    finally:
        child.kill()
        child.wait()


def test_sigint_where_the_parent_handles_it():
    assert _signal_for(()) == signal.SIGINT


def test_sigterm_where_the_parent_ignores_sigint_as_a_background_job_does():
    assert _signal_for((signal.SIGINT,)) == signal.SIGTERM


def test_nothing_where_both_are_ignored_or_the_process_is_gone():
    assert _signal_for((signal.SIGINT, signal.SIGTERM)) is None
    assert retry_answers._stop_signal(2**22 + 12345) is None
