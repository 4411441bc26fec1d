"""All credential checks of one cluster, the `mlops check-credentials` verb and the post-gen hook's report.

The values are the ones a CI job of that cluster would get: the user exports the cluster's values
(HPC_SSH_PRIVATE_KEY or its ssh_key setting, HPC_TOTP_SECRET, HPC_PASSWORD, MLOPS_TRIGGER_TOKEN) and
the shared WANDB_API_KEY, or types them at a hidden prompt. Offline by default; `online` also logs in
to the cluster; `gitlab` asks GitLab about the token and the project's pipeline-variable setting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import civars
from ..errors import BadInput, UsageError
from . import gitlab_api, hosts, keyfile, online, shapes, supply
from .result import SKIP, STRICT_VAR, Result, in_ci, report, strict

if TYPE_CHECKING:
    from ..settings import Settings

CLUSTER_SECRETS = (civars.KEY, civars.TOTP, civars.PASSWORD, civars.TRIGGER_TOKEN)


@dataclass(frozen=True)
class GitLabTarget:
    """Where `--gitlab` looks: the project (path or id), the GitLab URL and the role that clicks."""

    project: str
    url: str
    click_role: str = gitlab_api.DEFAULT_CLICK_ROLE

    @classmethod
    def of(
        cls, s: Settings, project: str | None, url: str | None, click_role: str, env: Mapping[str, str] = os.environ
    ) -> GitLabTarget:
        """From the verb's --project (else $CI_PROJECT_PATH), --url (else https://<project.gitlab_host>)."""
        project = project or env.get("CI_PROJECT_PATH")
        if not project:
            raise UsageError(
                f"--project: give the GitLab project path, e.g. group/{s.project.slug} (or its numeric id)"
            )
        return cls(project, url or f"https://{s.project.gitlab_host}", click_role)


def check_cluster(
    s: Settings,
    env: Mapping[str, str] = os.environ,
    codes: str = "stored",
    interactive: bool = False,
    online_login: bool = False,
) -> list[Result]:
    """Every offline check of the selected cluster (and the shared W&B key, the GitLab token's shape)."""
    name, auth, prompt = s.cluster.name, s.cluster.auth, interactive
    results = [keyfile.check(s.cluster.ssh_key, env, ci=in_ci(env))]
    results += hosts.check(s)
    if auth in civars.CODE_AUTH and codes == "typed":
        results.append(
            Result(
                f"TOTP secret (${civars.TOTP})",
                SKIP,
                f"not stored (--codes typed): each job of {name} needs a typed {civars.OTP}",
            )
        )
    elif auth in civars.CODE_AUTH:
        results.append(shapes.check_totp(supply.secret(civars.TOTP, env, prompt, name)))
    if auth == "totp+password":
        results.append(shapes.check_password(supply.secret(civars.PASSWORD, env, prompt, name)))
    results.append(shapes.check_trigger_token(env.get(civars.TRIGGER_TOKEN, "").strip() or None))
    mode = s.wandb.mode
    key = supply.secret(civars.WANDB, env, prompt and mode != "disabled")
    if key is None and mode == "offline":
        results.append(
            Result(
                f"W&B API key (${civars.WANDB})",
                SKIP,
                "not set: fine for wandb.mode offline (the runs stay offline, in the artifacts, not synced to W&B)",
            )
        )
    else:
        results.append(shapes.check_wandb_key(key, mode))
    token = env.get(civars.GITLAB_TOKEN, "").strip() or None
    results.append(shapes.check_gitlab_token(token))
    if online_login:
        results.append(online.check_login(s, env))
    return results


def run(
    s: Settings,
    env: Mapping[str, str] = os.environ,
    codes: str = "stored",
    online_login: bool = False,
    gitlab: GitLabTarget | None = None,
    strict_flag: bool = False,
    out: TextIO | None = None,
) -> None:
    """`mlops check-credentials [--cluster NAME]`: print the checks; BadInput when there are problems and
    --strict or MLOPS_STRICT_CREDENTIALS is set (exit 2), else return (problems are advice)."""
    supply.check_codes(s, codes)
    out = out or sys.stdout
    name = s.cluster.name
    print(
        f"cluster {name} (its CI/CD variables have the GitLab environment scope {civars.ENVIRONMENT_PREFIX}{name}):",
        file=out,
    )
    problems = report(check_cluster(s, env, codes, supply.can_prompt(env), online_login), out)
    if gitlab is not None:
        token = env.get(civars.GITLAB_TOKEN, "").strip() or None
        results = gitlab_api.check(s, gitlab.url, token, gitlab.project, gitlab.click_role)
        problems += report(results, out, title="GitLab")
    if problems and (strict_flag or strict(env)):
        raise BadInput(f"{problems} credential problem(s) (the lines above say which, and the fix)")


def configured(s: Settings, env: Mapping[str, str] = os.environ) -> bool:
    """Does this machine hold any credential of the selected cluster (an exported secret, or the key file)?"""
    if any(env.get(name, "").strip() for name in CLUSTER_SECRETS):
        return True
    return Path(os.path.expanduser(s.cluster.ssh_key or "~/.ssh/id_ed25519")).is_file()


def hook_report(s: Settings, interactive: bool, env: Mapping[str, str] = os.environ, out: TextIO | None = None) -> None:
    """The post-gen hook's credential part. Raises BadInput when strict mode is on and problems remain
    (the hook then fails the render); else the problems are advice.

    Quiet (one line) when nobody is at the terminal and this machine holds no credential of the cluster
    (a demo, a CI render: the checks would only list what is missing); the full report otherwise."""
    out = out or sys.stdout
    name = s.cluster.name
    if not interactive and not strict(env) and not configured(s, env):
        print(
            f"mlops-template: no credentials of cluster {name} on this machine (nothing checked); when you have "
            "them: `mlops check-credentials` (README: Credentials)",
            file=out,
        )
        return
    print(
        f"mlops-template: checking this machine's credentials for cluster {name} (nothing is stored; run "
        "`mlops check-credentials` again any time):",
        file=out,
    )
    problems = report(check_cluster(s, env, interactive=interactive), out)
    if problems and strict(env):
        raise BadInput(f"{STRICT_VAR} is set and {problems} credential problem(s) remain: failing the render")
