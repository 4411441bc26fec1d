"""The CI/CD variables the pipeline reads: the ONE table of their names, kinds, flags and scopes.

A leaf (it imports only mlops.options): mlops.ssh, mlops.credentials, the manifest
(`.gitlab/ci-variables.yml`, mlops.variables), the post-gen hook and the job files take the names
from here. Never values: only names, kinds and flags.

Scopes (GitLab environment scopes, https://docs.gitlab.com/ci/environments/#limit-the-environment-scope-of-a-cicd-variable):
every job that reaches a cluster declares `environment: hpc/<cluster>`. A secret of ONE cluster
(its key, TOTP secret, password, the trigger token of its runs) is stored once per cluster with the
scope `hpc/<cluster>`, so cluster B's jobs never see cluster A's secrets; a secret every cluster job
needs alike (the W&B key) has the scope `hpc/*`. Build, test and lint jobs have no environment and
see none of them, even on protected branches.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import options

# The names, as constants (import these; never spell a name again elsewhere).
KEY = "HPC_SSH_PRIVATE_KEY"
TOTP = "HPC_TOTP_SECRET"
OTP = "HPC_OTP"
PASSWORD = "HPC_PASSWORD"  # a name, not a value  # pragma: allowlist secret
TRIGGER_TOKEN = "MLOPS_TRIGGER_TOKEN"
WANDB = "WANDB_API_KEY"
# Local only (never a CI variable): the API token `mlops variables upload` and `check-credentials --gitlab` use.
GITLAB_TOKEN = "GITLAB_TOKEN"

# The jobs of one cluster (.gitlab/ci/cluster.yml, named `<job>-<cluster>`): the manual ones a person starts
# (where a typed HPC_OTP can be given) and the unattended collects of a trigger or a schedule.
MANUAL_JOBS = ("deploy", "status", "collect", "cancel")
CLUSTER_JOBS = (*MANUAL_JOBS, "collect-triggered", "collect-scheduled")
COLLECT_JOBS = ("collect", "collect-triggered", "collect-scheduled")
ENVIRONMENT_PREFIX = "hpc/"  # a cluster job's environment is hpc/<cluster name>
SHARED_SCOPE = ENVIRONMENT_PREFIX + "*"
CODE_AUTH = options.TOTP_METHODS  # cluster.auth values whose login asks for a one-time code
ALL_AUTH = options.AUTH_METHODS


@dataclass(frozen=True)
class Variable:
    """One CI/CD variable. `auth`: the cluster.auth methods that need it; `wandb`: needed only when
    wandb.mode is not "disabled"; `per_cluster`: one value per cluster (scope hpc/<name>), else one
    shared value (scope hpc/*)."""

    name: str
    description: str
    kind: str  # "file" (GitLab gives the job a path) or "env_var"
    protected: bool = True  # only protected branches/tags see it
    masked: bool = False  # GitLab masks it in job logs (one line, >= 8 chars, no spaces)
    hidden: bool = False  # "masked and hidden": not even maintainers can read it back (GitLab >= 17.4)
    jobs: tuple[str, ...] = CLUSTER_JOBS
    auth: tuple[str, ...] = ALL_AUTH
    wandb: bool = False
    manual: bool = False  # typed by a person when starting a manual job, never stored in the project
    # The pipeline works without it (with less: no trigger token = no notification, the schedule collects);
    # `variables upload/local` skip it when it is not set instead of refusing.
    optional: bool = False
    secret: bool = True
    per_cluster: bool = True
    raw: bool = True  # GitLab does not expand `$` inside the value (keys and secrets are opaque)

    def needed(self, auth: str, wandb_mode: str) -> bool:
        """Whether a cluster logging in with `auth` (cluster.auth) under `wandb_mode` needs it."""
        return auth in self.auth and not (self.wandb and wandb_mode == "disabled")

    def scope(self, cluster: str) -> str:
        """The GitLab environment scope of this variable's value for cluster `cluster`."""
        return f"{ENVIRONMENT_PREFIX}{cluster}" if self.per_cluster else SHARED_SCOPE


VARIABLES: tuple[Variable, ...] = (
    Variable(KEY, "Private SSH key of the cluster account (unencrypted; rotate by replacing it).", "file"),
    Variable(
        TOTP,
        "Base32 TOTP secret of the cluster account, for the one-time code.",
        "env_var",
        masked=True,
        hidden=True,
        auth=CODE_AUTH,
    ),
    Variable(
        OTP,
        "A one-time code typed when starting a manual cluster job (instead of HPC_TOTP_SECRET).",
        "env_var",
        protected=False,
        manual=True,
        jobs=MANUAL_JOBS,
        auth=CODE_AUTH,
    ),
    Variable(
        PASSWORD,
        "Service password of the cluster account, typed only into a password prompt (hpc_auth totp+password).",
        "env_var",
        masked=True,
        hidden=True,
        auth=("totp+password",),
    ),
    Variable(
        TRIGGER_TOKEN,
        "GitLab pipeline trigger token (glptt-...): the sweep's last job starts the collect pipeline with it "
        "(copied into the run directory, mode 0600, removed when the run is collected).",
        "env_var",
        masked=True,
        hidden=True,
        jobs=("deploy",),
        optional=True,
    ),
    Variable(
        WANDB,
        "W&B API key, used on the runner/login node to sync offline runs.",
        "env_var",
        masked=True,
        hidden=True,
        jobs=COLLECT_JOBS,
        wandb=True,
        per_cluster=False,
    ),
)
BY_NAME = {v.name: v for v in VARIABLES}
FILE_VARIABLES = frozenset(v.name for v in VARIABLES if v.kind == "file")  # their right shape is a path


def needed(auth: str, wandb_mode: str) -> list[Variable]:
    """The variables a cluster logging in with `auth` under W&B mode `wandb_mode` needs, in table order."""
    return [v for v in VARIABLES if v.needed(auth, wandb_mode)]
