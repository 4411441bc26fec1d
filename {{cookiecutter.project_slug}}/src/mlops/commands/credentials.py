"""`mlops check-credentials` and `mlops known-hosts show|add`: this machine's credentials for one
cluster and the project's pinned host keys (room: mlops.credentials). Never prints a secret."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..credentials import checks, gitlab_api, hosts, supply
from . import Verbs

CODES_HELP = (
    "a code-login cluster: 'stored' = HPC_TOTP_SECRET is stored and the job computes the codes (default), "
    "'typed' = nothing stored, whoever starts a cluster job types HPC_OTP"
)


def register(verbs: Verbs) -> None:
    p = verbs.add(
        "check-credentials",
        _check,
        "check the SSH key, pinned host keys, TOTP, W&B and GitLab credentials on this machine for one cluster "
        "(never prints a secret)",
        cluster=True,
    )
    p.add_argument("--online", action="store_true", help="also log in to the cluster")
    p.add_argument(
        "--gitlab",
        action="store_true",
        help="also ask GitLab ($GITLAB_TOKEN): the token's scopes, the project's pipeline-variable setting and "
        "its trigger tokens, with what to set",
    )
    add_gitlab_target(p)
    p.add_argument("--codes", choices=supply.CODES, default="stored", help=CODES_HELP)
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 when something is missing or wrong (also: MLOPS_STRICT_CREDENTIALS=1)",
    )
    group = verbs.group("known-hosts", "the cluster host keys pinned in .gitlab/known_hosts")
    for name, handler, help in (
        (
            "show",
            _show,
            "the lines your ~/.ssh/known_hosts has for the cluster's login node and jump host, with "
            "their fingerprints (compare them with the ones the cluster publishes)",
        ),
        ("add", _add, "copy those lines into .gitlab/known_hosts (commit it); never ssh-keyscan"),
    ):
        p = group.add(name, handler, help, cluster=True)
        p.add_argument("--from", dest="source", type=Path, default=hosts.USER_FILE, help="known_hosts file to read")


def add_gitlab_target(p: argparse.ArgumentParser) -> None:
    """--project, --url and --click-role (check-credentials --gitlab, variables upload)."""
    p.add_argument("--project", default=None, help="GitLab project path or id (default: $CI_PROJECT_PATH)")
    p.add_argument("--url", default=None, help="GitLab URL (default: https://<project.gitlab_host>)")
    p.add_argument(
        "--click-role",
        choices=gitlab_api.CLICK_ROLES,
        default=gitlab_api.DEFAULT_CLICK_ROLE,
        help="the lowest role that starts cluster jobs (it must be able to type HPC_OTP)",
    )


def _check(args, s) -> None:
    target = checks.GitLabTarget.of(s, args.project, args.url, args.click_role) if args.gitlab else None
    checks.run(s, codes=args.codes, online_login=args.online, gitlab=target, strict_flag=args.strict)


def _show(args, s) -> None:
    hosts.show(s, args.source)


def _add(args, s) -> None:
    hosts.add(s, args.source)
