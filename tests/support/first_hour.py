"""The rendered README's "first hour" commands, taken from the README itself and run as written.

first_hour_commands(readme)   the shell lines of the section "## The first hour ..." (fenced ```bash
                              blocks; a README of 0.2, which had one indented block there, works too)
run_commands(commands, cwd)   run them in ONE bash (so `. .venv/bin/activate` carries over), each timed
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SECTION = re.compile(r"^## The first hour.*?$(.*?)(?=^## |\Z)", re.M | re.S)
FENCE = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.M | re.S)


def first_hour_commands(readme: str) -> list[str]:
    """The commands of the README's first-hour section, one per line, comments and blank lines dropped."""
    found = SECTION.search(readme)
    assert found, "the README has no '## The first hour' section"
    section = found.group(1)
    blocks = FENCE.findall(section)
    if not blocks:  # 0.2's README: the first indented block of the section
        indented = re.search(r"(?:^    \S.*\n)+", section, re.M)
        blocks = [re.sub(r"^    ", "", indented.group(0), flags=re.M)] if indented else []
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class Step:
    command: str
    seconds: float
    returncode: int


def run_commands(commands: list[str], cwd: Path, env: dict | None = None, log: Path | None = None, timeout=3600):
    """Run `commands` in one bash in `cwd`, in order, stopping at the first that fails.

    Returns (steps, output): one Step per command that ran, and everything they printed.
    """
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks"
        script = ["exec 3>" + _quote(str(marks))]
        for i, command in enumerate(commands):
            script.append(f"echo start {i} $(date +%s.%N) >&3")
            script.append(command)
            script.append(f"rc=$?; echo end {i} $(date +%s.%N) $rc >&3; [ $rc = 0 ] || exit $rc")
        out = log or Path(tmp) / "out"
        with out.open("w") as fh:
            subprocess.run(
                ["bash", "-c", "\n".join(script)],
                cwd=cwd,
                env=env if env is not None else os.environ.copy(),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        starts, steps = {}, []
        for line in marks.read_text().splitlines():
            kind, i, stamp, *rc = line.split()
            if kind == "start":
                starts[int(i)] = float(stamp)
            else:
                steps.append(Step(commands[int(i)], float(stamp) - starts[int(i)], int(rc[0])))
        return steps, out.read_text(errors="replace")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0
