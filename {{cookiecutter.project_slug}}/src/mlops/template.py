"""This project's link to the template it was rendered from: is it up to date, what were the answers.

`cruft create` records the template, its commit and the answers (never a secret: no option is one)
in `.cruft.json`; `cruft update` re-renders the old and the new template version with them and
merges the difference into the project. The template's version is `mlops.__version__` (the
template's CHANGELOG.md has one entry per version saying what changes in a rendered repo).

`mlops template check` wraps `cruft check` for CI: an out-of-date project is a warning, not a
failure, so its own exit code (OUT_OF_DATE) lets the CI job use `allow_failure: exit_codes`
without hiding crashes (1) or bad setup (2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from . import __version__, errors, settings

CRUFT_FILE = ".cruft.json"
UP_TO_DATE = 0
OUT_OF_DATE = errors.TemplateOutOfDate.exit_code  # 3: the template has moved on: run `cruft update`
CANNOT_TELL = errors.CannotTell.exit_code  # 4: not linked, template unreachable, or cruft missing

HOW_TO_UPDATE = (
    "update on a clean git tree: `cruft update` (review, commit); "
    "conflicts and the changelog: README section 'Updating from the template'"
)


def _cruft_state(project_dir: Path) -> dict | None:
    path = project_dir / CRUFT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise errors.BadInput(f"{path}: not valid JSON ({exc}). Fix: restore it from git history") from None


def check(project_dir: Path | None = None, strict: bool = False, out: TextIO = sys.stdout) -> None:
    """Ask `cruft check` whether the template has moved on; print the verdict to `out`.

    Without strict every outcome is a reminder (a printed warning). With strict, an out-of-date
    project raises errors.TemplateOutOfDate (exit 3) and an unknown state errors.CannotTell (exit 4),
    which CI shows as warnings (`allow_failure: exit_codes`).
    """
    project_dir = settings.find_root(project_dir)
    state = _cruft_state(project_dir)
    code, message = _verdict(project_dir, state)
    print(message, file=out)
    if strict and code == OUT_OF_DATE:
        raise errors.TemplateOutOfDate("--strict: the template has moved on (exit 3)")
    if strict and code == CANNOT_TELL:
        raise errors.CannotTell("--strict: cannot tell whether the template has moved on (exit 4)")


def _verdict(project_dir: Path, state: dict | None) -> tuple[int, str]:
    if state is None:
        return CANNOT_TELL, (
            f"warning: {project_dir / CRUFT_FILE} is missing, so this project is not linked to "
            "the template. Fix: `cruft link <template-url> -y --extra-context "
            '"$(mlops template answers)"`, then commit .cruft.json'
        )
    where = f"template {state.get('template')} at {str(state.get('commit'))[:12]} (mlops {__version__})"
    try:
        import cruft  # a dev dependency: imported here so the rest of mlops works without it

        up_to_date = cruft.check(project_dir)
    except ImportError as exc:
        return CANNOT_TELL, f"warning: cannot check the template ({exc}). Fix: pip install cruft (and git)"
    except Exception as exc:  # noqa: BLE001 - cruft raises its own and GitPython's errors for a bad clone
        detail = " ".join(str(exc).split())[:300]
        return CANNOT_TELL, (
            f"warning: cannot reach {state.get('template')} to compare ({type(exc).__name__}: "
            f"{detail}). Fix: make the template URL in {CRUFT_FILE} reachable from here"
        )
    if up_to_date:
        return UP_TO_DATE, f"up to date with {where}"
    return OUT_OF_DATE, f"warning: the template has moved on since {where}; {HOW_TO_UPDATE}"


def answers(project_dir: Path | None = None) -> dict:
    """The template answers as they stand in mlops.toml now (for cruft link or cookiecutter replay)."""
    return settings.load(project_dir).answers()


def replay_file(project_dir: Path | None = None) -> dict:
    """A cookiecutter replay file: `cookiecutter --replay-file FILE <template>` renders it again."""
    return {"cookiecutter": answers(project_dir)}
