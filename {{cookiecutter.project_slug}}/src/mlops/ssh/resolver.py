"""Name resolution that the environment cannot steer.

glibc's resolver reads, besides /etc/resolv.conf and /etc/host.conf, these environment variables
(resolv.conf(5) ENVIRONMENT, host.conf(5) ENVIRONMENT, hostname(7); glibc drops the same ones for
set-uid programs, sysdeps/generic/unsecvars.h): LOCALDOMAIN replaces the search list and RES_OPTIONS
the options (`ndots:9` makes "login.hpc.example" try "login.hpc.example.<search domain>" FIRST),
HOSTALIASES maps single-label names to other names, RESOLV_HOST_CONF replaces host.conf, and the
RESOLV_* overrides change its keywords. In CI any of them can come from a pipeline variable and send
the login, with the code and the password it types, to another server. `mlops` removes them from its
own environment before it resolves any name (cli.main calls scrub() first); the machine's own files
still apply.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

RESOLVER_VARIABLES = (
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "HOSTALIASES",
    "RESOLV_HOST_CONF",
    "RESOLV_MULTI",
    "RESOLV_REORDER",
    "RESOLV_SPOOF_CHECK",
    "RESOLV_ADD_TRIM_DOMAINS",
    "RESOLV_OVERRIDE_TRIM_DOMAINS",
    "NIS_PATH",
)


def scrub(env: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove the resolver-steering variables from `env` (default: this process's environment, which
    glibc reads at its first lookup); returns the names that were set."""
    target = os.environ if env is None else env
    found = [name for name in RESOLVER_VARIABLES if name in target]
    for name in found:
        del target[name]
    return found
