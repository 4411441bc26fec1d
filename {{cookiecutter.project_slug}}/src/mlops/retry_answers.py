"""Refused template answers: one clear message, and the good answers kept for the next try.

What cookiecutter 2.7 and cruft 2.16 allow (read in their code): the questions are asked by
cookiecutter's `prompt.prompt_for_config`, which has no per-answer check (cruft calls the same
function), and the hooks see the answers only after the last question. So the pre-gen hook that
refuses answers writes a cookiecutter user-config file whose `default_context` holds every answer
that was fine, and prints the command that asks every question again with those as defaults
(`cookiecutter --config-file FILE TEMPLATE`, `cruft create --config-file FILE TEMPLATE`): Enter keeps
a good answer, and only the refused ones need typing.

A failing hook makes cookiecutter log a traceback (hooks.run_hook_from_repo_dir uses
logger.exception) and cruft print a second one. When the hook's parent is the cookiecutter or cruft
command (read from /proc), the hook instead removes the still empty project folder and interrupts its
parent: both are click programs, which end an interrupted command with "Aborted!" and exit 1, after
cleaning up their temp dirs. A library caller (a test, a wrapper) keeps the ordinary exception.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from . import options

FILENAME = "mlops-template-answers.yaml"


def good_answers(answers: dict, problems: list[options.Problem]) -> dict:
    """The answers worth keeping: not refused, not cookiecutter's own (_*), and a derived value only when
    it was typed (differs from what cookiecutter would derive), so a changed source still updates it."""
    refused = {p.field for p in problems}
    names = [o.name for o in options.OPTIONS]
    return {
        name: answers[name]
        for name in names
        if name in answers and name not in refused and answers[name] != options.derived(name, answers)
    }


def write(directory: Path, kept: dict) -> Path:
    """Write FILENAME (mode 0600) into `directory`: YAML (written as JSON, which YAML reads) that
    cookiecutter and cruft take with --config-file."""
    path = Path(directory) / FILENAME
    text = (
        "# mlops-template: your answers that were fine, as defaults for the next try.\n"
        "# Use: cookiecutter --config-file THIS_FILE TEMPLATE   (or: cruft create --config-file ...)\n"
        + json.dumps({"default_context": kept}, indent=2, ensure_ascii=False)
        + "\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def retry_command(answers: dict, path: Path) -> str:
    """The command that asks again with the kept answers as defaults (the template as the user gave it)."""
    template = str(answers.get("_template") or "gh:omi/mlops-template")
    by_cruft = "_commit" in answers and "_repo_dir" not in answers
    words = ["cruft", "create"] if by_cruft else ["cookiecutter"]
    words += ["--config-file", _shell_word(str(path))]
    if answers.get("_checkout"):
        words += ["--checkout", _shell_word(str(answers["_checkout"]))]
    output_dir = Path(path).parent
    if str(output_dir) != os.environ.get("PWD", ""):
        words += ["--output-dir" if by_cruft else "-o", _shell_word(str(output_dir))]
    return " ".join([*words, _shell_word(template)])


def refuse(problems: list[options.Problem], answers: dict, project_dir: Path, out: TextIO = sys.stderr) -> int:
    """Say what was refused and how to go on; keep the good answers in the output dir (where the project
    folder would have been). Returns 1."""
    print("mlops-template: these answers cannot be used (nothing was generated):", file=out)
    for problem in problems:
        print(f"  - {problem}", file=out)
    # cookiecutter names the output dir; cruft does not, and renders into the project dir's parent
    directory = Path(answers.get("_output_dir") or Path(project_dir).resolve().parent)
    try:
        path = write(directory, good_answers(answers, problems))
    except OSError as exc:
        print(f"mlops-template: could not keep your other answers ({exc.strerror}); start again", file=out)
        return 1
    print(
        f"Your other answers are kept in {path}. Ask again with them as defaults (Enter keeps one):\n"
        f"    {retry_command(answers, path)}",
        file=out,
        flush=True,
    )
    return 1


def stop_parent_cli(project_dir: Path, pid: int | None = None) -> bool:
    """Interrupt the cookiecutter/cruft command that runs this pre-gen hook, after removing its empty
    project folder, so that it ends with "Aborted!" instead of tracebacks. False (nothing done) when the
    parent is something else or the folder is not empty (cookiecutter's own failure path then runs)."""
    pid = pid or os.getppid()
    stop = _stop_signal(pid)
    if stop is None or not _is_cli(pid):
        return False
    try:
        os.rmdir(project_dir)  # only an empty folder: never one that held files before (-f/--overwrite)
    except OSError:
        return False
    os.kill(pid, stop)
    return True


def _stop_signal(pid: int) -> signal.Signals | None:
    """SIGINT where the parent handles it (Python's KeyboardInterrupt: click prints "Aborted!"); SIGTERM
    where it ignores SIGINT, as a command started in the background by a non-interactive shell does
    (a CI script): SIGINT would then be lost and the parent's own clean-up would trip over the removed
    folder. None when both are ignored. The masks are /proc/<pid>/status's SigIgn (proc(5))."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        ignored = int(next(line.split()[1] for line in lines if line.startswith("SigIgn:")), 16)
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    for candidate in (signal.SIGINT, signal.SIGTERM):
        if not ignored & (1 << (candidate - 1)):
            return candidate
    return None


def _is_cli(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [Path(a.decode(errors="replace")).name for a in argv[:3]]
    return bool({"cookiecutter", "cruft"} & set(words)) and "pytest" not in words


def _shell_word(text: str) -> str:
    if text and all(c.isalnum() or c in "@%+=:,./_-~" for c in text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"
