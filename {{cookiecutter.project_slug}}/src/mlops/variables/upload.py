"""`mlops variables upload --cluster NAME`: one cluster's variables set on the GitLab project.

Through python-gitlab (the [gitlab] extra): POST/PUT /projects/:id/variables with `environment_scope`
(docs.gitlab.com/api/project_level_variables/). A dry run unless `apply`; never prints a value. After
an upload it reads the project's pipeline-variable setting and says what to set
(mlops.credentials.gitlab_api), because stored secrets are only as safe as that setting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from .. import civars
from ..credentials import gitlab_api, shapes, supply
from ..credentials.checks import GitLabTarget
from ..credentials.result import report
from ..errors import BadInput, WorkFailed
from .plan import Planned, plan

if TYPE_CHECKING:
    from ..settings import Settings


def flags(p: Planned) -> str:
    """`file, protected, not masked, scope hpc/uni`: how the variable is stored (never its value)."""
    v = p.variable
    masked = "masked and hidden" if v.hidden else ("masked" if v.masked else "not masked")
    return ", ".join([v.kind, "protected" if v.protected else "unprotected", masked, f"scope {p.scope}"])


def upload(
    s: Settings,
    target: GitLabTarget,
    apply: bool = False,
    codes: str = "stored",
    env: Mapping[str, str] = os.environ,
    out: TextIO | None = None,
) -> None:
    """Set the selected cluster's variables (and the shared ones) on the GitLab project of `target`; the
    token from $GITLAB_TOKEN (never an argument: it would be on a command line).

    Raises BadInput before anything is sent (a bad or missing value, a wrong token, GitLab unreachable:
    nothing was changed) and WorkFailed when GitLab refuses one midway (the ones before it were set)."""
    out = out or sys.stdout
    project, url, token = target.project, target.url, env.get(civars.GITLAB_TOKEN, "").strip() or None
    planned = plan(s, env, codes, prompt=supply.can_prompt(env))
    problems = list(planned.problems)
    if token:  # a dry run needs no token, but a wrong one is better caught now than at --apply
        check = shapes.check_gitlab_token(token)
        if check.problem:
            problems.append(f"{civars.GITLAB_TOKEN}: {check.detail}. Fix: {check.fix}")
    if problems:
        raise BadInput("\n".join([*problems, "nothing was changed on GitLab"]))
    for note in planned.notes:
        print(note, file=out)
    if not apply:
        for p in planned.planned:
            print(f"would set {p.variable.name} ({flags(p)}) on {project}", file=out)
        print(
            "dry run: nothing was sent; add --apply to set them (the project's pipeline-variable setting is "
            "checked then, or now by `mlops check-credentials --gitlab`)",
            file=out,
        )
        return
    if not token:
        raise BadInput(
            f"{civars.GITLAB_TOKEN} is not set. Fix: export a project access token with the api scope "
            "(never put it on the command line); nothing was changed on GitLab"
        )
    proj = gitlab_api.connect(url, token, project)
    try:
        existing = {(x.key, x.environment_scope) for x in proj.variables.list(get_all=True)}
    except Exception as exc:
        raise BadInput(
            f"GitLab did not list the variables of {project!r} ({type(exc).__name__}). Fix: the token needs "
            "the api scope and the Maintainer role; nothing was changed on GitLab"
        ) from None
    for p in planned.planned:
        action = _set(proj, p, (p.variable.name, p.scope) in existing)
        existing.add((p.variable.name, p.scope))
        print(f"{action} {p.variable.name} ({flags(p)})", file=out)
    ci = gitlab_api.read(proj, existing)
    report(gitlab_api.advise(s, ci, target.click_role, url, project), out, title="pipeline variables")


def _set(proj, p: Planned, exists: bool) -> str:
    """Create or update one variable; WorkFailed naming it (never its value) when GitLab refuses."""
    v = p.variable
    attrs = {
        "value": p.value,
        "variable_type": v.kind,
        "protected": v.protected,
        "raw": v.raw,
        "description": v.description,
        "environment_scope": p.scope,
    }
    try:
        if exists:  # hidden-ness is fixed at creation; an update sends the value and the other flags
            proj.variables.update(v.name, {**attrs, "masked": v.masked}, filter={"environment_scope": p.scope})
            return "updated"
        hidden = {"masked_and_hidden": True, "masked": True} if v.hidden else {"masked": v.masked}
        proj.variables.create({"key": v.name, **attrs, **hidden})
        return "created"
    except Exception as exc:
        message = _without_value(getattr(exc, "error_message", ""), p.value)
        raise WorkFailed(
            f"{v.name} (scope {p.scope}): GitLab refused it ({type(exc).__name__}: {message}); "
            "the variables listed before it were set"
        ) from None


def _without_value(text: object, value: str) -> str:
    """GitLab's error text, bounded, with the value cut out should GitLab ever echo it."""
    clean = "".join(c if c.isprintable() else " " for c in str(text))[:300]
    for line in value.splitlines():
        if len(line.strip()) >= 4:
            clean = clean.replace(line.strip(), "***")
    return clean
