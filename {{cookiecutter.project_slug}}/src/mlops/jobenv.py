"""The environment `mlops` runs with in a CI job: the last step of `.gitlab/ci/job.sh` -> `mlops.sh`.

    python -I -m mlops.jobenv ARGS...      (mlops.sh runs it; ARGS are the `mlops` arguments)

GitLab gives pipeline, trigger and manual-job variables precedence over the project's and over its own
predefined CI_* values, so every variable a job sees may come from whoever may start a pipeline. job.sh
has already removed everything but CI_*, GITLAB_USER_LOGIN, HPC_*, MLOPS_* and WANDB_API_KEY before
any program ran, and mlops.sh set PATH, HOME and the locale. This module keeps exactly:

- the CI/CD variables of the variable table (`SECRET_NAMES`, from the one table of names), as they are;
- the GitLab job data the tool records or sends (`JOB_DATA`), each checked as data: a value that
  fails its pattern stops the job (BadInput naming the variable) before mlops.toml is read or anyone
  logs in. Nothing here is an endpoint: CI_API_V4_URL, CI_SERVER_URL, CI_PROJECT_URL are dropped (the
  GitLab host is `project.gitlab_host` of mlops.toml, reviewed in the repository);
- PATH, HOME, LANG, LC_ALL as mlops.sh set them.

Everything else (CI_JOB_TOKEN, CI_PROJECT_DIR, MLOPS_TOOL_DIR, an unknown HPC_* ...) is removed from
os.environ before the command runs, so no child process (git, wandb sync) inherits it either.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

from . import civars, errors

# The names of the CI/CD variables the project stores or a person types (HPC_*, MLOPS_TRIGGER_TOKEN,
# WANDB_API_KEY): mlops.civars is the one table of them.
SECRET_NAMES = frozenset(v.name for v in civars.VARIABLES)
_ID = re.compile(r"[0-9]{1,20}")
# GitLab's job data the tool uses, with the shape GitLab gives it (docs.gitlab.com, predefined variables).
JOB_DATA: dict[str, re.Pattern[str]] = {
    "CI": re.compile(r"true"),
    "GITLAB_CI": re.compile(r"true"),
    "CI_PIPELINE_ID": _ID,  # the run id p<id> of the click's run (mlops.runid.from_ci)
    "CI_JOB_ID": _ID,  # recorded in collected.json
    "CI_PROJECT_ID": _ID,  # the notification's project (the host comes from mlops.toml)
    "CI_COMMIT_SHA": re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}"),
    # a branch or tag name (git check-ref-format's characters, no `..`): the notification's ref
    "CI_COMMIT_REF_NAME": re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._/+-]{0,254}"),
    "CI_PIPELINE_URL": re.compile(r"https?://[A-Za-z0-9.:-]+/[A-Za-z0-9._~/%-]{1,400}"),  # shown, never called
    "GITLAB_USER_LOGIN": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"),
}
FIXED = ("PATH", "HOME", "LANG", "LC_ALL")  # set by mlops.sh itself


def job_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of `environ` (name -> value); raises BadInput naming a malformed job datum.

    An empty value counts as unset. The values of SECRET_NAMES are never looked at (or printed).
    """
    kept: dict[str, str] = {}
    for name, value in environ.items():
        if name in SECRET_NAMES or name in FIXED:
            kept[name] = value
        elif name in JOB_DATA and value:
            if not JOB_DATA[name].fullmatch(value):
                raise errors.BadInput(
                    f"the CI variable {name} does not look like GitLab's own value (pattern "
                    f"{JOB_DATA[name].pattern}): it was set as a pipeline or manual-job variable. Fix: start "
                    "the pipeline without it (template README: Security model)"
                )
            kept[name] = value
    return kept


def main(argv: list[str] | None = None) -> int:
    """Replace os.environ with the allow-listed job environment, then run `mlops ARGS` (its exit code)."""
    try:
        kept = job_environment(os.environ)
    except errors.BadInput as exc:
        print(f"mlops: {exc}", file=sys.stderr)
        return exc.exit_code
    os.environ.clear()
    os.environ.update(kept)
    from .cli import main as mlops_main

    return mlops_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
