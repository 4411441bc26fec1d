"""Tell GitLab that a run is final, so that a pipeline collects it without a click (issue 12).

The sweep's last job (SLURM: `afterany` on every model array; scheduler none: the runner's last step)
runs shell/notify.sh, which POSTs GitLab's pipeline trigger API once:
    POST <api v4>/projects/<project id>/trigger/pipeline
    token=<trigger token>  ref=<the commit's ref>  variables[MLOPS_RUN_ID]=<run id>
    variables[MLOPS_TRIGGER]=collect
(docs.gitlab.com "Trigger pipelines by using the API"; such pipelines have CI_PIPELINE_SOURCE ==
"trigger"). The token (CI variable MLOPS_TRIGGER_TOKEN, manifest in mlops.variables) travels to the
cluster over SFTP into state/trigger-token (0600, no newline), is read by curl from that file, and is
removed when the run is collected (mlops.cluster.runs). It is never on a command line, in a batch
script, or in a message. Everything else here is public (URL, project id, ref, run id) and validated,
because it becomes words of a batch script.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..remote import Remote
    from ..settings import Settings

TOKEN_VARIABLE = "MLOPS_TRIGGER_TOKEN"
TOKEN_FILE = "state/trigger-token"
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
_REF = re.compile(r"[A-Za-z0-9._/+-]{1,255}")


@dataclass(frozen=True)
class Trigger:
    """Where the notification goes: the trigger endpoint, the ref, and the timeout in seconds."""

    endpoint: str
    ref: str
    timeout_s: int

    def argv(self, run_id: str) -> list[str]:
        """The arguments of shell/notify.sh after RUN_DIR (all public, all validated)."""
        return [self.endpoint, self.ref, run_id, str(self.timeout_s)]


def trigger(s: Settings, env: Mapping[str, str] = os.environ) -> tuple[Trigger | None, str]:
    """The trigger of this submission, or (None, why not) when it cannot be sent.

    Reads CI_API_V4_URL (else https://<project.gitlab_host>/api/v4), CI_PROJECT_ID,
    CI_COMMIT_REF_NAME and whether MLOPS_TRIGGER_TOKEN is set (never its value), plus
    mlops.toml notify.timeout_s (seconds; checked by mlops.settings). A value that fails its
    pattern is a reason, not a crash.
    """
    if not env.get(TOKEN_VARIABLE):
        return None, f"{TOKEN_VARIABLE} is not set (add it as a protected, masked CI/CD variable; mlops variables)"
    api = (env.get("CI_API_V4_URL") or f"https://{s.project.gitlab_host}/api/v4").rstrip("/")
    project, ref = env.get("CI_PROJECT_ID", ""), env.get("CI_COMMIT_REF_NAME", "")
    if not _URL.fullmatch(api):
        return None, f"the GitLab API URL {api[:100]!r} is not a plain http(s) URL"
    if not project.isdigit():
        return None, "CI_PROJECT_ID is not set (notifications are sent from CI jobs)"
    if not _REF.fullmatch(ref) or ".." in ref:
        return None, f"CI_COMMIT_REF_NAME {ref[:100]!r} is not a plain git ref name"
    return Trigger(f"{api}/projects/{project}/trigger/pipeline", ref, s.notify.timeout_s), ""


def token_bytes(env: Mapping[str, str] = os.environ) -> bytes:
    """The token as the file holds it: no surrounding whitespace, no newline (curl sends the file as is)."""
    return env.get(TOKEN_VARIABLE, "").strip().encode()


def install_token(session: Remote, run_dir: str, env: Mapping[str, str] = os.environ) -> None:
    """Write the trigger token into the run directory, mode 0600 from the start (SFTP, not argv)."""
    session.write_file(f"{run_dir}/{TOKEN_FILE}", token_bytes(env), 0o600)


def remove_token(session: Remote, run_dir: str) -> None:
    """Remove the run's trigger token (after the run is collected; harmless when absent)."""
    session.run(f"rm -f {shlex.quote(f'{run_dir}/{TOKEN_FILE}')}", check=False)
