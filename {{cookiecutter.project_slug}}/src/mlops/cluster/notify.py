"""Tell GitLab that a run is final, so that a pipeline collects it without a click (issues 12, 17).

The sweep's last job (SLURM: `afterany` on every model array; scheduler none: the runner's last step)
runs shell/notify.sh, which POSTs GitLab's pipeline trigger API once with two form fields:
    POST https://<project.gitlab_host>/api/v4/projects/<CI_PROJECT_ID at submit>/trigger/pipeline
    token=<trigger token>  ref=<CI_COMMIT_REF_NAME at submit>
(docs.gitlab.com "Trigger pipelines by using the API"). No variables: the triggered pipeline runs,
per cluster, `mlops collect --all-final --cluster NAME`, and the cluster's own state decides which
final, uncollected runs it fetches (mlops.cluster.runs). Plain http:// only for a loopback
gitlab_host (the tests' stand-in on 127.0.0.1). The token (CI variable MLOPS_TRIGGER_TOKEN, mlops.civars) travels
to the cluster over SFTP into state/trigger-token (0600, no newline; state/ is never bound into a
container), is read by curl from that file, and is removed when the run is collected. It is never on
a command line, in a batch script, or in a message. Everything else here is public and validated,
because it becomes words of a batch script.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import civars

if TYPE_CHECKING:
    from ..remote import Remote
    from ..settings import Settings

TOKEN_VARIABLE = civars.TRIGGER_TOKEN
TOKEN_FILE = "state/trigger-token"
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")
_REF = re.compile(r"[A-Za-z0-9._/+-]{1,255}")


@dataclass(frozen=True)
class Trigger:
    """Where the notification goes: the trigger endpoint, the ref, and the timeout in seconds."""

    endpoint: str
    ref: str
    timeout_s: int

    def argv(self) -> list[str]:
        """The arguments of shell/notify.sh after RUN_DIR (all public, all validated)."""
        return [self.endpoint, self.ref, str(self.timeout_s)]


def is_loopback(host: str) -> bool:
    """Whether `host` (a gitlab_host: name or address, optional :port) is this machine's loopback."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def trigger(s: Settings, env: Mapping[str, str] = os.environ) -> tuple[Trigger | None, str]:
    """The trigger of this submission, or (None, why not) when it cannot be sent.

    Reads mlops.toml project.gitlab_host and notify.timeout_s (checked by mlops.settings), and from
    the CI job CI_PROJECT_ID, CI_COMMIT_REF_NAME and whether MLOPS_TRIGGER_TOKEN is set (never its
    value). A value that fails its pattern is a reason, not a crash.
    """
    if not env.get(TOKEN_VARIABLE):
        return None, f"{TOKEN_VARIABLE} is not set (add it as a protected, masked CI/CD variable; mlops variables)"
    host = s.project.gitlab_host
    project, ref = env.get("CI_PROJECT_ID", ""), env.get("CI_COMMIT_REF_NAME", "")
    if not _HOST.fullmatch(host):
        return None, f"project.gitlab_host {host[:100]!r} is not a host name with an optional :port"
    if not project.isdigit():
        return None, "CI_PROJECT_ID is not set (notifications are sent from CI jobs)"
    if not _REF.fullmatch(ref) or ".." in ref:
        return None, f"CI_COMMIT_REF_NAME {ref[:100]!r} is not a plain git ref name"
    scheme = "http" if is_loopback(host) else "https"
    return Trigger(f"{scheme}://{host}/api/v4/projects/{project}/trigger/pipeline", ref, s.notify.timeout_s), ""


def token_bytes(env: Mapping[str, str] = os.environ) -> bytes:
    """The token as the file holds it: no surrounding whitespace, no newline (curl sends the file as is)."""
    return env.get(TOKEN_VARIABLE, "").strip().encode()


def install_token(session: Remote, run_dir: str, env: Mapping[str, str] = os.environ) -> None:
    """Write the trigger token into the run's state/, mode 0600 from the start (SFTP, not argv)."""
    session.write_file(f"{run_dir}/{TOKEN_FILE}", token_bytes(env), 0o600)


def remove_token(session: Remote, run_dir: str) -> None:
    """Remove the run's trigger token (when the final run is collected; harmless when absent)."""
    session.run(f"rm -f {shlex.quote(f'{run_dir}/{TOKEN_FILE}')}", check=False)
