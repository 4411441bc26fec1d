"""What GitLab itself says: the API token's scopes, and the project's pipeline-variable setting with
the advice on what to set (issue 17.1). Read through python-gitlab (the [gitlab] extra); never a value.

Why the setting matters: pipeline, trigger and manual-job variables outrank the project's own CI/CD
variables, so whoever may set them can steer a job that holds the cluster's secrets. GitLab's
project setting `ci_pipeline_variables_minimum_override_role` decides who may (it governs pipeline
AND manual-job variables: GitLab hides a manual job's variables form from roles below it, MR !183068,
!188321). The project needs variables nowhere but a typed HPC_OTP at the click, so:
  no cluster types codes (HPC_TOTP_SECRET stored, or auth key/command-key) -> `no_one_allowed`
  some cluster types HPC_OTP                                                -> the lowest role that clicks
and every trigger token is owned by a user below that role (a pipeline runs as the token's owner).

Fields relied on (docs.gitlab.com/api/projects/#get-a-single-project and #edit-a-project):
  GET /projects/:id         restrict_user_defined_variables (bool; false = every Developer may set
                            pipeline variables, the role is then ignored),
                            ci_pipeline_variables_minimum_override_role (no_one_allowed | developer |
                            maintainer | owner; shown to Maintainers, GitLab >= 17.1)
  GET /projects/:id/variables            key, environment_scope (project_level_variables)
  GET /projects/:id/triggers             description, owner.id, owner.username (pipeline_triggers)
  GET /projects/:id/members/all/:user_id access_level 30 developer, 40 maintainer, 50 owner (members)
  GET /personal_access_tokens/self       scopes, expires_at (personal_access_tokens; project tokens too)
  the fix: PUT /projects/:id with ci_pipeline_variables_minimum_override_role=ROLE and
           restrict_user_defined_variables=true
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import civars
from ..errors import BadInput
from ..ssh import sources
from .result import FAIL, PASS, Result

if TYPE_CHECKING:
    from ..settings import Settings

ROLES = ("developer", "maintainer", "owner", "no_one_allowed")  # from the loosest to the strictest
CLICK_ROLES = ROLES[:3]
DEFAULT_CLICK_ROLE = "developer"
ACCESS_LEVEL = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
ROLE_OF_LEVEL = {level: role for role, level in ACCESS_LEVEL.items()}
SETTING = "ci_pipeline_variables_minimum_override_role"


@dataclass(frozen=True)
class Trigger:
    description: str
    owner: str
    access_level: int | None  # None: GitLab did not say


@dataclass
class ProjectCi:
    """The project's pipeline-variable setting, which variables it stores, its trigger tokens."""

    restrict: bool | None
    role: str | None
    stored: set[tuple[str, str]]  # (key, environment_scope); values are never read
    triggers: list[Trigger] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def effective_role(self) -> str | None:
        """Who may set pipeline variables now: restrict off = any Developer; None when GitLab did not say."""
        if self.restrict is False:
            return "developer"
        if self.role in ROLES:
            return self.role
        return "maintainer" if self.restrict else None  # GitLab < 17.1: restrict alone means Maintainer+


def connect(url: str, token: str, project: str, timeout: float = 30) -> Any:
    """The python-gitlab project object (GET /projects/:id); BadInput when GitLab cannot be asked."""
    import gitlab  # python-gitlab, the [gitlab] extra

    try:
        return gitlab.Gitlab(url, private_token=token, timeout=timeout).projects.get(project)
    except Exception as exc:
        raise BadInput(
            f"cannot reach project {project!r} at {url} ({type(exc).__name__}). Fix: check "
            "project.gitlab_host (or --url), the project path and the token's scope (api, role Maintainer); "
            "nothing was changed on GitLab"
        ) from None


def read(proj: Any, stored: set[tuple[str, str]] | None = None) -> ProjectCi:
    """The setting, the stored variable names and the triggers of a python-gitlab project object."""
    ci = ProjectCi(proj.attributes.get("restrict_user_defined_variables"), proj.attributes.get(SETTING), set())
    try:
        ci.stored = (
            set(stored)
            if stored is not None
            else {(x.key, x.environment_scope) for x in proj.variables.list(get_all=True)}
        )
    except Exception as exc:
        ci.errors.append(f"cannot list the project's CI/CD variables ({type(exc).__name__})")
    try:
        triggers = proj.triggers.list(get_all=True)
    except Exception as exc:
        ci.errors.append(f"cannot list the project's trigger tokens ({type(exc).__name__})")
        triggers = []
    for t in triggers:
        owner = getattr(t, "owner", None) or {}
        level = None
        if owner.get("id") is not None:
            try:
                level = int(proj.members_all.get(owner["id"]).access_level)
            except Exception:
                level = None
        name = sources.sanitize(owner.get("username", "?"), 60)
        ci.triggers.append(Trigger(sources.sanitize(getattr(t, "description", "") or "", 60), name, level))
    return ci


def _scope_matches(scope: str, environment: str) -> bool:
    """GitLab environment-scope matching: `*` is a wildcard, otherwise exact."""
    return re.fullmatch(".*".join(map(re.escape, scope.split("*"))), environment) is not None


def typed_clusters(s: Settings, stored: set[tuple[str, str]]) -> list[str]:
    """The clusters whose jobs need a typed HPC_OTP: code login and no HPC_TOTP_SECRET in their scope."""
    out = []
    for name in s.clusters:
        env = civars.ENVIRONMENT_PREFIX + name
        if s.select(name).cluster.auth in civars.CODE_AUTH and not any(
            key == civars.TOTP and _scope_matches(scope, env) for key, scope in stored
        ):
            out.append(name)
    return out


def fix_call(url: str, project: str, role: str) -> str:
    """The API call that sets `role` (the token from the environment: never a value on a command line)."""
    return (
        f'curl --request PUT --header "PRIVATE-TOKEN: ${civars.GITLAB_TOKEN}" --data "{SETTING}={role}" '
        f'--data "restrict_user_defined_variables=true" "{url.rstrip("/")}/api/v4/projects/{quote(project, safe="")}"'
    )


def advise(s: Settings, ci: ProjectCi, click_role: str, url: str, project: str) -> list[Result]:
    """One line on the setting and one per trigger token: what is set, what it should be, the exact fix."""
    typed = typed_clusters(s, ci.stored)
    want = click_role if typed else "no_one_allowed"
    why = (
        f"cluster(s) {', '.join(typed)} log in with a code typed at the click (HPC_OTP), by a {click_role} "
        "(--click-role)"
        if typed
        else "every cluster logs in without a typed code (HPC_TOTP_SECRET stored, or key login)"
    )
    item = f"GitLab {SETTING} of {project}"
    results = [Result(item, FAIL, e, "use a token with the api scope and the Maintainer role") for e in ci.errors]
    now = ci.effective_role
    if now is None:
        results.append(
            Result(
                item,
                FAIL,
                "GitLab did not show it (the token's role is below Maintainer?)",
                f"ask a Maintainer to set it to {want}: {fix_call(url, project, want)}",
            )
        )
    elif now == want:
        results.append(Result(item, PASS, f"{now}, as it should be: {why}"))
    elif typed and ROLES.index(now) > ROLES.index(want):
        detail = (
            f"is {now}, but {why}: GitLab hides a manual job's variables form from roles below {now}, so "
            "they cannot type the code"
        )
        results.append(Result(item, FAIL, detail, f"set it to {want}: {fix_call(url, project, want)}"))
    else:
        off = " (restrict_user_defined_variables is off)" if ci.restrict is False else ""
        detail = (
            f"is {now}{off}: a {now} can set pipeline variables, which outrank the project's own, in any "
            f"pipeline, also those that hold the cluster secrets; {why}"
        )
        results.append(Result(item, FAIL, detail, f"set it to {want}: {fix_call(url, project, want)}"))
    for t in ci.triggers:
        results.append(_trigger_result(t, want))
    return results


def _trigger_result(t: Trigger, want: str) -> Result:
    item = f"trigger token {t.description!r} (owner {t.owner})"
    role = ROLE_OF_LEVEL.get(t.access_level or 0, f"access level {t.access_level}")
    if want == "no_one_allowed":
        return Result(item, PASS, "no pipeline it starts can carry variables (no_one_allowed)")
    if t.access_level is not None and t.access_level < ACCESS_LEVEL[want]:
        return Result(item, PASS, f"its owner is a {role}, below {want}: a pipeline it starts cannot carry variables")
    detail = (
        f"its owner is {'of unknown role' if t.access_level is None else 'a ' + role}, not below {want}: whoever "
        "holds the token can start pipelines with variables"
    )
    fix = (
        f"let a user below {want} own the trigger token (Settings > CI/CD > Pipeline trigger tokens), or store no "
        f"{civars.TRIGGER_TOKEN} (the scheduled pipeline collects)"
    )
    return Result(item, FAIL, detail, fix)


def check_token(token: str, url: str, timeout: float = 10) -> Result:
    """Scopes and expiry of the token, from GitLab itself (GET /personal_access_tokens/self)."""
    import gitlab  # python-gitlab, the [gitlab] extra

    item = f"GitLab token at {url}"
    try:
        info = gitlab.Gitlab(url, private_token=token, timeout=timeout).personal_access_tokens.get("self")
    except gitlab.exceptions.GitlabAuthenticationError:
        return Result(
            item,
            FAIL,
            "GitLab refused the token (revoked, expired or wrong instance)",
            "create a new project access token with the api scope",
        )
    except Exception as exc:
        return Result(
            item,
            FAIL,
            f"cannot ask GitLab ({type(exc).__name__}: {sources.sanitize(exc, 200)})",
            "check project.gitlab_host in mlops.toml (or --url) and your network",
        )
    scopes = sorted(getattr(info, "scopes", []) or [])
    if "api" not in scopes:
        return Result(item, FAIL, f"scopes {scopes} lack 'api'", "create a token with the api scope")
    expires = getattr(info, "expires_at", None)
    if expires:
        days = (datetime.date.fromisoformat(expires) - datetime.date.today()).days
        if days < 0:
            return Result(item, FAIL, f"expired on {expires}", "create a new token")
        return Result(item, PASS, f"scopes {scopes}, expires {expires} (in {days} days)")
    return Result(item, PASS, f"scopes {scopes}, no expiry date")


def check(s: Settings, url: str, token: str | None, project: str, click_role: str) -> list[Result]:
    """`check-credentials --gitlab`: the token, then the project's pipeline-variable setting and triggers."""
    if not token:
        return [
            Result(
                f"GitLab project {project}",
                FAIL,
                f"{civars.GITLAB_TOKEN} is not set",
                f"export a project access token (api scope, role Maintainer) as {civars.GITLAB_TOKEN}",
            )
        ]
    token_result = check_token(token, url)
    if token_result.problem:
        return [token_result]
    try:
        proj = connect(url, token, project)
    except BadInput as exc:
        return [token_result, Result(f"GitLab project {project}", FAIL, str(exc), "see the message")]
    return [token_result, *advise(s, read(proj), click_role, url, project)]
