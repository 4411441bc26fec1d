"""The per-cluster part of `.gitlab-ci.yml`: one include of `.gitlab/ci/cluster.yml` per cluster of mlops.toml.

`.gitlab-ci.yml` holds the list between two marker lines; `mlops ci write` rewrites that block from
the [clusters.NAME] blocks (in file order), `mlops config check` reports a block that differs
(`drift`), and the post-gen hook renders the same text for the template's first cluster. Each include
passes the cluster's name as the `cluster` input, so the jobs are deploy-NAME etc. with `--cluster NAME`
written into their script line (never read from a variable).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from . import errors

CI_FILE = Path(".gitlab-ci.yml")
BEGIN = "  # BEGIN clusters: one include per [clusters.NAME] of mlops.toml, written by `mlops ci write`"
END = "  # END clusters (deploy-NAME, status-NAME, collect-NAME, cancel-NAME, collect-triggered/-scheduled-NAME)"


def block(clusters: Sequence[str]) -> str:
    """The include lines for these cluster names (in this order), markers included, ending in a newline."""
    lines = [BEGIN]
    for name in clusters:
        # a JSON string is valid YAML: a name like "0123" stays text
        lines += ["  - local: .gitlab/ci/cluster.yml", "    inputs:", f"      cluster: {json.dumps(name)}"]
    return "\n".join([*lines, END]) + "\n"


def _split(text: str, path: Path) -> tuple[str, str, str]:
    """(before, block, after) of `.gitlab-ci.yml`'s text; BadInput when the markers are missing."""
    start, end = text.find(BEGIN + "\n"), text.find(END)
    if start < 0 or end < start:
        raise errors.BadInput(
            f"{path}: the cluster block is missing (the lines {BEGIN.strip()!r} ... {END.strip()!r} under "
            "include:). Fix: put them back from the template's .gitlab-ci.yml, then run `mlops ci write`"
        )
    stop = text.index("\n", end) + 1 if "\n" in text[end:] else len(text)
    return text[:start], text[start:stop], text[stop:]


def drift(root: Path, clusters: Sequence[str]) -> str | None:
    """None when `.gitlab-ci.yml` includes cluster.yml once per cluster in this order (or there is no
    `.gitlab-ci.yml`: a project run from a laptop only), else the problem and its fix."""
    path = root / CI_FILE
    if not path.is_file():
        return None
    _, current, _ = _split(path.read_text(encoding="utf-8"), CI_FILE)
    if current == block(clusters):
        return None
    return (
        f"{CI_FILE}: the cluster jobs do not match mlops.toml's clusters ({', '.join(clusters)}). "
        "Fix: run `mlops ci write` and commit .gitlab-ci.yml"
    )


def write(root: Path, clusters: Sequence[str]) -> bool:
    """Rewrite the cluster block of `root/.gitlab-ci.yml` for these names; True when the file changed.

    Only the lines between the markers change (comments and every other include are kept); the file is
    replaced atomically (a temp file renamed over it).
    """
    path = root / CI_FILE
    text = path.read_text(encoding="utf-8")
    before, current, after = _split(text, CI_FILE)
    new = block(clusters)
    if current == new:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(before + new + after, encoding="utf-8")
    tmp.replace(path)
    return True
