"""The one error model of `mlops`: every error a user can meet is an MlopsError carrying its exit code.

`mlops.cli.main` catches MlopsError alone and prints its message (no traceback); anything else is a
bug and keeps its traceback. Exit codes (docs/ARCHITECTURE.md, README):

    0  ok
    1  WorkFailed: the work ran and some of it failed (a configuration, an upload, a remote command)
    2  BadInput: bad input or setup, found before any work (the message names the field or file and
       the fix); also a refused login, which needs a person to fix something
    3  TemplateOutOfDate: `mlops template check --strict`, the template has moved on
    4  CannotTell: `mlops template check --strict`, cannot compare with the template

Messages never contain a secret or any part of one (mlops.ssh.sources formats credential sources).
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class: `str(error)` is the whole user-facing message; `exit_code` is what `mlops` exits with."""

    exit_code: int = 1


class WorkFailed(MlopsError):
    """The work ran and (part of) it failed; exit 1."""

    exit_code = 1


class BadInput(MlopsError):
    """Bad input or setup, caught before any work or login; exit 2. The message names the field and the fix."""

    exit_code = 2


class UsageError(BadInput):
    """A verb used the wrong way (exit 2); the message says how to call it."""


class Problems(BadInput):
    """Several problems of one input at once (e.g. every bad key of mlops.toml); one line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


class TemplateOutOfDate(MlopsError):
    """`mlops template check --strict`: the template has moved on; exit 3."""

    exit_code = 3


class CannotTell(MlopsError):
    """`mlops template check --strict`: no .cruft.json, or the template cannot be reached; exit 4."""

    exit_code = 4


# An optional dependency's import name -> (its package, the pyproject.toml extra that installs it). The
# laptop install (`.[dev]`) leaves the cluster and GitLab libraries out; CI installs them from the locks.
EXTRAS = {
    "paramiko": ("paramiko", "cluster"),
    "pyotp": ("pyotp", "cluster"),
    "wandb": ("wandb", "cluster"),
    "matplotlib": ("matplotlib", "cluster"),
    "gitlab": ("python-gitlab", "gitlab"),
}


def missing_extra(exc: ModuleNotFoundError) -> BadInput | None:
    """The clear error for an optional dependency that is not installed (naming the extra to install),
    or None when `exc` is about any other module (a bug: it keeps its traceback)."""
    known = EXTRAS.get((exc.name or "").split(".")[0])
    if known is None:
        return None
    package, extra = known
    return BadInput(f'{package} is not installed (the [{extra}] extra). Fix: pip install -e ".[{extra}]"')
