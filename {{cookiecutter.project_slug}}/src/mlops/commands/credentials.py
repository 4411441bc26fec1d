"""`mlops check-credentials`: this machine's SSH key, known_hosts, TOTP, W&B and GitLab credentials for
one cluster (room: mlops.credentials). Never prints a secret."""

from __future__ import annotations

import sys

from .. import credentials
from ..errors import BadInput
from . import Verbs


def register(verbs: Verbs) -> None:
    p = verbs.add(
        "check-credentials",
        _check,
        "check the SSH key, known_hosts, TOTP, W&B and GitLab credentials on this machine (never prints a secret)",
        cluster=True,
    )
    p.add_argument("--online", action="store_true", help="also log in to the cluster and ask GitLab about the token")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 when something is missing or wrong (also: MLOPS_STRICT_CREDENTIALS=1)",
    )


def _check(args, s) -> None:
    interactive = sys.stdin.isatty() and not credentials.in_ci()
    problems = credentials.report(
        credentials.check_all(s.answers(s.cluster.name), interactive=interactive, online=args.online, root=s.root)
    )
    if problems and (args.strict or credentials.strict()):  # vars: move into mlops.credentials (one call)
        raise BadInput(f"{problems} credential problem(s) on this machine (the lines above say which and the fix)")
