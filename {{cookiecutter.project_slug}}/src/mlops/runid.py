"""The run identity: what a run id may be, where a verb's run id comes from, where its directory is.

A leaf: it imports only mlops.errors and mlops.options, so every room may use it. The one definition of each fact:

    PATTERN      letters, digits, '.', '_', '-'; starts with a letter or digit; at most 101; no '..'.
                 It names a directory on the cluster and under results/ here, and is a word in batch
                 scripts and env files.
    new()        "<prefix>-<UTC yyyymmdd-hhmmss>-<4 hex>": unique, sortable
    from_ci()    "p<CI_PIPELINE_ID>": one run per pipeline (GitLab's predefined variable)
    resolve()    --run-id, else the pipeline's run in CI, else the last run submitted from this checkout
                 to that cluster (.mlops/last-run/<cluster>, written by remember()), else BadInput
    run_dir()    "<cluster_root>/runs/<run id>"
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from .errors import BadInput
from .options import CLUSTER_NAME

PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")
LAST_RUN_DIR = Path(".mlops") / "last-run"  # under the project root; one file per cluster name


def check(run_id: object, field: str = "run id") -> str:
    """`run_id` itself when it fullmatches PATTERN and holds no '..'; else BadInput naming `field`."""
    if not isinstance(run_id, str) or not valid(run_id):
        shown = repr(run_id)[:80] if isinstance(run_id, str) and run_id.isprintable() else "the value given"
        raise BadInput(
            f"{field}: {shown} is not a run id. Fix: use letters, digits, '.', '_' and '-' only "
            "(at most 101, starting with a letter or digit, no '..')"
        )
    return run_id


def valid(run_id: object) -> bool:
    """True when check(run_id) would pass (for filtering names listed on the cluster)."""
    return isinstance(run_id, str) and bool(PATTERN.fullmatch(run_id)) and ".." not in run_id


def new(prefix: str = "local") -> str:
    """A fresh run id: "<prefix>-<UTC yyyymmdd-hhmmss>-<4 hex digits>" (BadInput for a bad prefix)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return check(f"{prefix}-{stamp}-{secrets.token_hex(2)}", "run id prefix")


def from_ci(env: Mapping[str, str] = os.environ) -> str:
    """ "p<CI_PIPELINE_ID>" when GitLab's CI_PIPELINE_ID is all digits (every job of a pipeline has the
    same one), else ""."""
    pipeline = env.get("CI_PIPELINE_ID", "")
    return f"p{pipeline}" if pipeline.isascii() and pipeline.isdigit() else ""


def _last_run_file(root: Path, cluster: str) -> Path:
    if not CLUSTER_NAME.fullmatch(cluster):  # mlops.settings checked it; here it becomes a path
        raise BadInput(f"cluster {cluster!r}: not a cluster name")
    return Path(root) / LAST_RUN_DIR / cluster


def resolve(explicit: str | None, root: Path, cluster: str, env: Mapping[str, str] = os.environ) -> str:
    """The run a verb acts on, checked: `explicit` (--run-id), else from_ci(env), else the last run
    remember()ed in `root` for `cluster`; BadInput when there is none."""
    if explicit:
        return check(explicit, "--run-id")
    ci = from_ci(env)
    if ci:
        return check(ci, "CI_PIPELINE_ID")
    path = _last_run_file(root, cluster)
    try:
        if path.is_file() and not path.is_symlink():
            return check(path.read_text(encoding="utf-8").strip(), str(LAST_RUN_DIR / cluster))
        legacy = Path(root) / LAST_RUN_DIR  # mlops 0.2 kept one file for its one cluster
        if legacy.is_file() and not legacy.is_symlink():
            return check(legacy.read_text(encoding="utf-8").strip(), str(LAST_RUN_DIR))
    except (OSError, UnicodeDecodeError):
        pass
    raise BadInput(
        f"no run given and none submitted from here to cluster {cluster!r}. Fix: pass --run-id "
        "(in CI the run of the pipeline, p$CI_PIPELINE_ID, is taken)"
    )


def remember(root: Path, cluster: str, run_id: str) -> Path:
    """Record `run_id` as the last run submitted from `root` to `cluster` (for resolve); the file's path."""
    check(run_id)
    path = _last_run_file(root, cluster)
    if path.parent.is_file() or path.parent.is_symlink():  # mlops 0.2's single file: now a directory
        path.parent.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{cluster}.{os.getpid()}.tmp")
    tmp.write_text(run_id + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def run_dir(cluster_root: str, run_id: str) -> str:
    """ "<cluster_root>/runs/<run id>" for a checked run id (BadInput otherwise)."""
    return f"{cluster_root}/runs/{check(run_id)}"
