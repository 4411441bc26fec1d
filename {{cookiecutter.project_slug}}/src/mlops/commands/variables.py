"""`mlops variables write|upload|local`: the CI/CD variable manifest and its values (room: mlops.variables).
Never shows a value."""

from __future__ import annotations

import os
import sys

from .. import variables
from ..errors import BadInput, UsageError
from . import Verbs


def register(verbs: Verbs) -> None:
    group = verbs.group("variables", "the CI/CD variable manifest .gitlab/ci-variables.yml and its values")
    group.add("write", _write, "regenerate .gitlab/ci-variables.yml from mlops.toml")
    p = group.add(
        "upload",
        _upload,
        "set the variables on the GitLab project (dry run unless --apply; token from $GITLAB_TOKEN)",
        cluster=True,
    )
    p.add_argument("--project", default=None, help="GitLab project path or id (default: $CI_PROJECT_PATH)")
    p.add_argument("--url", default=None, help="GitLab URL (default: https://<project.gitlab_host>)")
    p.add_argument("--apply", action="store_true", help="really send them (default: only say what would be set)")
    p = group.add(
        "local", _local, "write the untracked 0600 .gitlab-ci-local-variables.yml for gitlab-ci-local", cluster=True
    )
    p.add_argument("--remove", action="store_true", help="delete the file instead")


def _write(args, s) -> None:
    print(f"wrote {variables.write_manifest(s.root, s.answers())}")


# vars: the two handlers below still translate mlops.variables' return values into errors; once
# upload/write_local raise themselves, each becomes one call.
def _upload(args, s) -> None:
    project = args.project or os.environ.get("CI_PROJECT_PATH")
    if not project:
        raise UsageError(
            f"variables upload: --project: give the GitLab project path, e.g. group/{s.project.slug} "
            "(or its numeric id)"
        )
    url = args.url or f"https://{s.project.gitlab_host}"
    token = os.environ.get("GITLAB_TOKEN")
    if variables.upload(s.answers(s.cluster.name), project, url, token, apply=args.apply):
        raise BadInput("nothing was changed on GitLab (the lines above say why)")


def _local(args, s) -> None:
    path = s.root / variables.LOCAL_FILE
    if args.remove:
        path.unlink(missing_ok=True)
        print(f"removed {path}")
        return
    written, problems = variables.write_local(s.root, s.answers(s.cluster.name))
    for problem in problems:
        print(f"mlops variables local: {problem}", file=sys.stderr)
    if problems:
        raise BadInput("nothing was written")
    print(f"wrote {written} (mode 0600, gitignored; values are not shown)")
