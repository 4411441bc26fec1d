"""The cluster, W&B and GitLab credentials on this machine, checked without ever storing or printing them.

result.py      one Result line (PASS / MISSING / FAIL / SKIP with the fix), the report, CredentialError
keyfile.py     the SSH private key ($HPC_SSH_PRIVATE_KEY or the cluster's ssh_key)
shapes.py      the text secrets by shape: TOTP secret, service password, W&B key, trigger and GitLab tokens
hosts.py       the pinned host keys in .gitlab/known_hosts, and `mlops known-hosts show|add`
supply.py      where a value comes from: the environment, else a hidden prompt
online.py      a real login to the cluster (mlops.ssh)
gitlab_api.py  what GitLab says: the token's scopes, the project's pipeline-variable setting and advice
checks.py      all checks of one cluster, `mlops check-credentials` and the post-gen hook's report

Names of the variables: mlops.civars. Credential sources in messages: mlops.ssh.sources.
"""

from __future__ import annotations

from .result import FAIL, MISSING, PASS, SKIP, STRICT_VAR, CredentialError, Result, in_ci, report, strict

__all__ = ["FAIL", "MISSING", "PASS", "SKIP", "STRICT_VAR", "CredentialError", "Result", "in_ci", "report", "strict"]
