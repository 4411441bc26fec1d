"""What the template's hooks do, importable so that tests and users can run it again.

The hooks in the template repo are three-line shims: cookiecutter renders them to temp files
that cannot import their neighbours, so they add this package to sys.path and call in here.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import options


def _report(problems: list[options.Problem], out=sys.stderr) -> int:
    if not problems:
        return 0
    print("mlops-template: these answers cannot be used (nothing was generated):", file=out)
    for problem in problems:
        print(f"  - {problem}", file=out)
    return 1


def pre_gen(answers: dict) -> int:
    """Before rendering: validate the answers; non-zero makes cookiecutter remove the output."""
    return _report(options.validate(answers))


def post_gen(project_dir: Path, answers: dict) -> int:
    """After rendering: validate again (cruft renders without a pre-gen template path)."""
    return _report(options.validate(answers))
