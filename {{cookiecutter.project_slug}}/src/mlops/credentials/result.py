"""One line of a credential check, the report of all lines, and the error a credential raises.

Each check gives one Result: PASS, MISSING (not set up yet), FAIL (set up wrongly) or SKIP, with the
fix. A Result never holds a secret, only lengths, kinds, sources (mlops.ssh.sources) and public
fingerprints, so printing it is always safe.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from ..errors import BadInput

PASS, MISSING, FAIL, SKIP = "PASS", "MISSING", "FAIL", "SKIP"
STRICT_VAR = "MLOPS_STRICT_CREDENTIALS"  # "1": problems make the check (and the hook) fail


class CredentialError(BadInput):
    """A credential cannot be used; the message names it and the fix (exit 2). Never holds its value."""


@dataclass(frozen=True)
class Result:
    """What was checked (`item`), PASS/MISSING/FAIL/SKIP, what was found (`detail`) and the `fix`."""

    item: str
    status: str
    detail: str
    fix: str = ""

    @property
    def problem(self) -> bool:
        return self.status in (MISSING, FAIL)

    def __str__(self) -> str:
        text = f"[{self.status}] {self.item}: {self.detail}"
        return text + (f"\n         fix: {self.fix}" if self.fix and self.problem else "")

    def error(self) -> CredentialError:
        """This problem as an error (for the callers that need the value, e.g. `mlops variables`)."""
        return CredentialError(f"{self.item}: {self.detail}. Fix: {self.fix}")


def in_ci(env: Mapping[str, str] = os.environ) -> bool:
    """True inside a CI job (GitLab sets CI and GITLAB_CI)."""
    return bool(env.get("CI") or env.get("GITLAB_CI"))


def strict(env: Mapping[str, str] = os.environ) -> bool:
    """MLOPS_STRICT_CREDENTIALS is 1/true/yes: problems fail the check and the render."""
    return env.get(STRICT_VAR, "").strip().lower() in ("1", "true", "yes")


def report(results: list[Result], out: TextIO | None = None, title: str = "credentials") -> int:
    """Print one line per check and a summary line (`<title>: N problem(s)` or `<title>: all set`);
    returns the number of problems."""
    out = out or sys.stdout
    for result in results:
        print(str(result), file=out)
    problems = sum(r.problem for r in results)
    print(f"{title}: {problems} problem(s)" if problems else f"{title}: all set", file=out)
    return problems
