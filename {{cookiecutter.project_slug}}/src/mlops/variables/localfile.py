"""`.gitlab-ci-local-variables.yml`: the project's CI/CD variables for gitlab-ci-local on this machine.

Format (gitlab-ci-local 4.73, README "Project file variables"; read as YAML by js-yaml): per variable
`values:` keyed by GitLab environment scope, matched against the job's `environment:` as GitLab
does (`*` a wildcard; the longest matching scope wins), so each cluster's jobs see its own values:

    HPC_TOTP_SECRET: {type: variable, values: {"hpc/uni": "...", "hpc/state": "..."}}
    HPC_SSH_PRIVATE_KEY: {values: {"hpc/uni": "/home/me/.ssh/uni-ci"}}   # no type: a path -> file variable
    WANDB_API_KEY: {type: variable, values: {"hpc/*": "..."}}

A key is given as its file's PATH (gitlab-ci-local copies the file for the job; the key is not copied
here); every other value is written as text with `type: variable` (a value starting with / or ~
would otherwise be taken for a path). We write the body as JSON (valid YAML 1.2) after a comment
header, so that this module reads its own file back without a YAML library.

One run handles ONE cluster: it replaces that cluster's scope (and the shared hpc/* of a shared
variable it planned) and keeps every other cluster's values as they were. Mode 0600 from the first
byte, written to a temp file and renamed (never half-written), gitignored.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import civars, options
from ..credentials import supply
from ..errors import BadInput
from . import LOCAL_FILE
from .plan import Plan, plan

if TYPE_CHECKING:
    from ..settings import Settings

HEADER = (
    "# gitlab-ci-local variables: written by `mlops variables local --cluster NAME`; holds secrets.\n"
    "# Mode 0600, gitignored; delete it when done (mlops variables local --remove).\n"
)


def read(path: Path) -> dict[str, dict]:
    """The variables of an existing file we wrote ({} when there is none); BadInput for anything else."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8", errors="replace")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    try:
        doc = json.loads(body) if body.strip() else {}
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("values"), dict) for v in doc.values()
    ):
        raise BadInput(
            f"{path.name}: not in the form `mlops variables local` writes (edited by hand, or from 0.2). "
            f"Fix: mlops variables local --remove, then write it again for each cluster"
        )
    return doc


def merge(doc: dict[str, dict], plan: Plan) -> dict[str, dict]:
    """`doc` with the plan's cluster replaced: its scope emptied of every variable, then the planned values set.

    A variable left out of this plan (e.g. --codes typed) loses this cluster's value; other scopes stay."""
    scope = civars.ENVIRONMENT_PREFIX + plan.cluster
    out: dict[str, dict] = {}
    for name, entry in doc.items():
        values = {k: v for k, v in entry["values"].items() if k != scope}
        if values:
            out[name] = {**entry, "values": values}
    for p in plan.planned:
        entry = out.setdefault(p.variable.name, {} if p.is_path else {"type": "variable"})
        entry.setdefault("values", {})[p.scope] = p.value
    return {name: out[name] for name in sorted(out, key=_table_order)}


def _table_order(name: str) -> tuple[int, str]:
    names = [v.name for v in civars.VARIABLES]
    return (names.index(name) if name in names else len(names), name)


def write(root: Path, plan: Plan) -> Path:
    """Merge the plan into `<root>/.gitlab-ci-local-variables.yml`; BadInput (nothing written) for problems."""
    if plan.problems:
        raise BadInput("\n".join([*plan.problems, "nothing was written"]))
    for p in plan.planned:
        if options.control_characters(p.value):
            raise BadInput(  # never show the value: it may be a secret
                f"{p.variable.name} for cluster {plan.cluster}: the value holds a control character (a line "
                "break?). Fix: set it on one line; nothing was written"
            )
    path = Path(root) / LOCAL_FILE
    doc = merge(read(path), plan)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # O_CREAT keeps the mode of an existing file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 from the first byte
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(HEADER + json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def remove_file(root: Path) -> Path:
    """Delete the file (all clusters' values); the path, whether it existed or not."""
    path = Path(root) / LOCAL_FILE
    path.unlink(missing_ok=True)
    return path


def local(
    s: Settings,
    codes: str = "stored",
    remove: bool = False,
    env: Mapping[str, str] = os.environ,
    out: TextIO | None = None,
) -> None:
    """`mlops variables local [--cluster NAME]`: the selected cluster's values into the file (or remove it)."""
    out = out or sys.stdout
    if remove:
        print(f"removed {remove_file(s.root)}", file=out)
        return
    planned = plan(s, env, codes, local=True, prompt=supply.can_prompt(env))
    path = write(s.root, planned)
    for note in planned.notes:
        print(note, file=out)
    print(
        f"wrote cluster {s.cluster.name}'s values into {path} (mode 0600, gitignored; values are not shown)", file=out
    )
