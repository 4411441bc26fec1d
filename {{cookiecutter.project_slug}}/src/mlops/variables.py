"""The CI/CD variables the pipeline reads: the ONE definition of their names and flags.

`.gitlab/ci-variables.yml` (the protected-variable manifest) is generated from VARIABLES, the
transport reads the env names from here, and a test proves that the CI files read exactly the
variables listed for the chosen options. Never values: only names, kinds and flags.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CLUSTER_JOBS = ("deploy", "run", "status", "collect", "cancel")
# Every job that reaches the cluster declares `environment: hpc/...`; scoping the secrets to it keeps
# them out of every other job (build, test, lint) even on protected branches.
ENVIRONMENT_SCOPE = "hpc/*"
MANIFEST = Path(".gitlab") / "ci-variables.yml"
LOCAL_FILE = Path(".gitlab-ci-local-variables.yml")   # gitignored; holds secrets, mode 0600


@dataclass(frozen=True)
class Variable:
    name: str
    description: str
    kind: str                 # "file" (GitLab gives the job a path) or "env_var"
    protected: bool = True    # only protected branches/tags see it
    masked: bool = False      # GitLab masks it in job logs (one line, >= 8 chars, no spaces)
    hidden: bool = False      # "masked and hidden": not even maintainers can read it back (GitLab >= 17.4)
    jobs: tuple[str, ...] = CLUSTER_JOBS
    # When it is needed, as a predicate over the answers (mlops.toml seen as template options).
    needed: object = field(default=lambda answers: True, compare=False)
    manual: bool = False      # typed by a person when starting a manual job, never stored in the project
    secret: bool = True
    environment_scope: str = ENVIRONMENT_SCOPE
    raw: bool = True          # GitLab does not expand `$` inside the value (keys and secrets are opaque)


VARIABLES: tuple[Variable, ...] = (
    Variable("HPC_SSH_PRIVATE_KEY", "Private SSH key of the cluster account (unencrypted; rotate by replacing it).",
             "file"),
    Variable("HPC_KNOWN_HOSTS", "known_hosts lines pinning the login node (and jump host) host keys.",
             "file", secret=False),
    Variable("HPC_TOTP_SECRET", "Base32 TOTP secret of the cluster account, for the one-time code.",
             "env_var", masked=True, hidden=True, needed=lambda a: a.get("hpc_auth") == "totp"),
    Variable("HPC_OTP", "A one-time code typed when starting a manual cluster job (instead of HPC_TOTP_SECRET).",
             "env_var", protected=False, masked=False, manual=True, needed=lambda a: a.get("hpc_auth") == "totp"),
    Variable("WANDB_API_KEY", "W&B API key, used on the runner/login node to sync offline runs.",
             "env_var", masked=True, hidden=True, jobs=("collect",),
             needed=lambda a: a.get("wandb_mode") != "disabled"),
)
BY_NAME = {v.name: v for v in VARIABLES}


def for_answers(answers: dict) -> list[Variable]:
    """The variables a project with these answers needs."""
    return [v for v in VARIABLES if v.needed(answers)]
