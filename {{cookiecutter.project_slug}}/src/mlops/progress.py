"""Live progress of `mlops run --local`, readable in a terminal and in a CI log alike.

In a terminal (the stream is a TTY and TERM is not "dumb") one status line is redrawn in place
(carriage return + erase line) at most once a second; everything else (a failure, a warning) is
printed above it. Elsewhere (a CI log, a file, a pipe) there is no carriage return: a status line is
printed when another `every_pct` percent of the configurations are done, or `every_s` seconds passed.

    [ 12/343] 10 completed, 2 failed, 2 running; 1 min 5 s elapsed, about 29 min left
"""

from __future__ import annotations

import os
import time
from typing import TextIO

LONG_S = 3600.0  # a sweep estimated to take longer than this on this machine gets a warning


def duration(seconds: float) -> str:
    """12 s, 3 min 5 s, 2.4 h (seconds are rounded; negative counts as 0)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds / 3600:.1f} h"


def is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """Counts of one sweep and their display. `total` configurations to run now, `jobs` at a time."""

    def __init__(self, total: int, jobs: int, out: TextIO, every_s: float = 30.0, every_pct: float = 10.0):
        self.total, self.jobs, self.out = total, max(1, jobs), out
        self.every_s, self.every_pct = every_s, every_pct
        self.tty = is_terminal(out)
        self.completed = self.failed = self.running = 0
        self.started = time.monotonic()
        self.first_s: float | None = None  # duration of the first configuration that finished
        self._last_line = self.started
        self._last_done = 0
        self._drawn = False

    @property
    def done(self) -> int:
        return self.completed + self.failed

    def eta(self) -> str:
        """'about 29 min left' from the pace so far; before the first result, what is known."""
        if not self.done:
            return "time left: known when the first configuration ends"
        if self.done >= self.total:
            return "done"
        pace = (time.monotonic() - self.started) / self.done
        return f"about {duration(pace * (self.total - self.done))} left"

    def status(self) -> str:
        width = len(str(self.total))
        return (
            f"  [{self.done:>{width}}/{self.total}] {self.completed} completed, {self.failed} failed, "
            f"{self.running} running; {duration(time.monotonic() - self.started)} elapsed, {self.eta()}"
        )

    def say(self, text: str) -> None:
        """A line of its own (a failure, a warning), above the status line in a terminal."""
        self._clear()
        print(text, file=self.out, flush=True)
        if self.tty:
            self._draw()

    def finished(self, ok: bool, seconds: float) -> None:
        """One configuration ended; may print the status line (and, once, the long-sweep warning)."""
        self.completed += ok
        self.failed += not ok
        if self.first_s is None:
            self.first_s = seconds
            self._warn_if_long(seconds)
        step = self.total * self.every_pct / 100
        if self.tty or self.done == self.total or self.done - self._last_done >= step:
            self._line()
        else:
            self.tick()

    def tick(self) -> None:
        """Called often by the runner's loop: redraws (terminal) or prints when every_s has passed."""
        now = time.monotonic()
        if self.tty and now - self._last_line >= 1.0 or not self.tty and now - self._last_line >= self.every_s:
            self._line()

    def close(self) -> None:
        """End the status line (a terminal keeps the last state on screen)."""
        if self.tty and self._drawn:
            print(file=self.out, flush=True)
            self._drawn = False

    def estimate(self, seconds: float) -> float:
        """Wall time of the whole sweep if every configuration took `seconds`, `jobs` at a time."""
        return seconds * -(-self.total // self.jobs)

    def _warn_if_long(self, seconds: float) -> None:
        total = self.estimate(seconds)
        if total > LONG_S:
            self.say(
                f"  warning: this sweep would take about {duration(total)} on this machine ({self.total} "
                f"configurations, the first took {duration(seconds)}, {self.jobs} at a time). Ctrl-C stops it "
                "and keeps what finished (`mlops run --local --resume` goes on later); try one configuration "
                "with `mlops run --local --config <id>`, or run the sweep on the cluster"
            )

    def _line(self) -> None:
        self._last_line, self._last_done = time.monotonic(), self.done
        if self.tty:
            self._draw()
        else:
            print(self.status(), file=self.out, flush=True)

    def _draw(self) -> None:
        self.out.write("\r\x1b[K" + self.status())
        self.out.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.out.write("\r\x1b[K")
            self._drawn = False
