"""`mlops variables write|upload|local`: the CI/CD variable manifest and one cluster's values
(room: mlops.variables). Never shows a value."""

from __future__ import annotations

from ..credentials import checks
from ..variables import localfile, manifest, plan, upload
from . import Verbs
from .credentials import CODES_HELP, add_gitlab_target


def register(verbs: Verbs) -> None:
    group = verbs.group("variables", "the CI/CD variable manifest .gitlab/ci-variables.yml and its values")
    group.add("write", _write, "regenerate .gitlab/ci-variables.yml from mlops.toml (every cluster)")
    p = group.add(
        "upload",
        _upload,
        "set one cluster's variables (scope hpc/NAME) and the shared ones on the GitLab project (dry run unless "
        "--apply; values from your environment, token from $GITLAB_TOKEN)",
        cluster=True,
    )
    add_gitlab_target(p)
    p.add_argument("--apply", action="store_true", help="really send them (default: only say what would be set)")
    p.add_argument("--codes", choices=plan.CODES, default="stored", help=CODES_HELP)
    p = group.add(
        "local",
        _local,
        "write one cluster's values into the untracked 0600 .gitlab-ci-local-variables.yml (other clusters kept)",
        cluster=True,
    )
    p.add_argument("--codes", choices=plan.CODES, default="stored", help=CODES_HELP)
    p.add_argument("--remove", action="store_true", help="delete the file (every cluster's values) instead")


def _write(args, s) -> None:
    print(f"wrote {manifest.write_manifest(s)}")


def _upload(args, s) -> None:
    target = checks.GitLabTarget.of(s, args.project, args.url, args.click_role)
    upload.upload(s, target, apply=args.apply, codes=args.codes)


def _local(args, s) -> None:
    localfile.local(s, codes=args.codes, remove=args.remove)
