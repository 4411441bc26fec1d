"""`mlops config check|migrate`: mlops.toml itself (rooms: mlops.settings, mlops.settings_write).

`check` is what every verb does first (mlops.cli loads the file, so a missing or inconsistent key is
reported field by field, `clusters.NAME.key`, with the fix, exit 2); here it also lists the clusters
and, for a 0.2 file, how to migrate it; a .gitlab-ci.yml whose cluster jobs differ from the
clusters is reported with the fix (`mlops ci write`). `migrate` rewrites a 0.2 file in the 0.3 layout.
"""

from __future__ import annotations

from .. import ci, errors, settings_write
from . import NONE, Verbs


def register(verbs: Verbs) -> None:
    group = verbs.group("config", "check or migrate mlops.toml")
    group.add("check", _check, "validate mlops.toml with the template's rules (every cluster block, field by field)")
    p = group.add(
        "migrate",
        _migrate,
        "rewrite a 0.2 mlops.toml ([cluster] + [scheduler]) as a [clusters.NAME] "
        "block (comments kept; the file is replaced atomically)",
        settings=NONE,
    )
    p.add_argument("--name", default=None, help="the cluster's NAME (default: the first label of its host)")


def _check(args, s) -> None:
    problem = ci.drift(s.root, s.clusters)  # the pipeline's jobs per cluster (`mlops ci write`)
    if problem:
        raise errors.BadInput(problem)
    print("\n".join(settings_write.summary(s)))


def _migrate(args, s) -> None:
    settings_write.migrate(name=args.name)
