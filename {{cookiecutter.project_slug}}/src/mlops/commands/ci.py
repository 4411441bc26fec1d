"""`mlops ci write`: the per-cluster include list of .gitlab-ci.yml from mlops.toml (room: mlops.ci).

`mlops config check` (the pipeline's `config` job) reports the same list's drift with this verb as the fix.
"""

from __future__ import annotations

from .. import ci
from . import Verbs


def register(verbs: Verbs) -> None:
    verbs.group("ci", "the pipeline's per-cluster jobs").add(
        "write", _write, "write .gitlab-ci.yml's include of .gitlab/ci/cluster.yml: one per cluster of mlops.toml"
    )


def _write(args, s) -> None:
    changed = ci.write(s.root, s.clusters)
    print(f"{ci.CI_FILE}: {'wrote' if changed else 'already has'} the jobs of cluster(s) {', '.join(s.clusters)}")
