"""The run directory: the same shape locally (runs/<run-id>/) and on the cluster.

run.json        provenance: commit, pipeline, images, parameters hash, created, by whom
envs/           written by the params stage (one <config-id>.env each + index.json)
data/           written by the data stage
results/<id>/   metrics.json, log, wandb/ of one configuration
state/          stage logs, job ids, tasks/<config-id>.json (one status per configuration)
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import subprocess
from pathlib import Path

# Every state a configuration can be in, shared by the local runner, the cluster and collect. The
# cluster's are SLURM's words (squeue(1) "JOB STATE CODES"): a task SLURM put back in the queue
# (`scontrol requeue`, preemption or a node failure with requeue) is "requeued" and runs again.
STATES = ("pending", "requeued", "running", "completed", "failed", "timeout", "out-of-memory", "preempted",
          "node-fail", "boot-fail", "deadline", "cancelled")  # fmt: skip
# The states that end a configuration; a run is final when every configuration is in one of them.
FINAL = ("completed", "failed", "timeout", "out-of-memory", "preempted", "node-fail", "boot-fail", "deadline",
         "cancelled")  # fmt: skip
# What a user does about each state that is not a success (mlops status, the collect table and junit).
# `time` and `mem` are keys of the cluster's block of mlops.toml ([clusters.NAME]).
FIXES = {
    "requeued": "SLURM put the task back in the queue (requeue, preemption or a node failure); it runs again "
    "by itself: wait for it",
    "failed": "the model exited with an error: read the tail of its log",
    "timeout": "the task hit its time limit: raise `time` in the cluster's block of mlops.toml (or make the "
    "model faster), then `mlops submit --failed-only`",
    "out-of-memory": "the task used more memory than it asked for: raise `mem` in the cluster's block of "
    "mlops.toml, then `mlops submit --failed-only`",
    "preempted": "a job of higher priority took the node: `mlops submit --failed-only` reruns it (or use a "
    "partition without preemption)",
    "node-fail": "the node failed under the task: `mlops submit --failed-only` reruns it; tell the cluster's "
    "admins when it repeats",
    "boot-fail": "the node failed to boot for the task: `mlops submit --failed-only` reruns it; tell the "
    "cluster's admins when it repeats",
    "deadline": "SLURM's deadline for the job passed before it could run: `mlops submit --failed-only`",
    "cancelled": "cancelled (mlops cancel, scancel, a failed stage before it, or an admin): `mlops submit "
    "--failed-only` reruns it",
}


def git_commit(root: Path) -> str:
    """The commit being built or run: $CI_COMMIT_SHA in CI, else `git rev-parse HEAD` in `root`, else "unknown".

    The one implementation (images, the cluster submit and the local runner all record it).
    """
    if os.environ.get("CI_COMMIT_SHA"):
        return os.environ["CI_COMMIT_SHA"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def count_states(statuses: list[str]) -> dict[str, int]:
    """State -> number of configurations in it, for every state of STATES (in that order)."""
    return {state: sum(s == state for s in statuses) for state in STATES}


def format_counts(counts: dict[str, int]) -> str:
    """'3 completed, 1 failed' (states with zero left out), or 'no configurations'."""
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no configurations"


def create(runs_root: Path, run_id: str, provenance: dict) -> Path:
    """Make a fresh run directory; refuses to reuse one, so no run overwrites another."""
    run = Path(runs_root) / run_id
    run.mkdir(parents=True, exist_ok=False, mode=0o700)
    for sub in ("state/tasks", "results"):
        (run / sub).mkdir(parents=True, mode=0o700)
    record = {
        "run_id": run_id,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "by": os.environ.get("GITLAB_USER_LOGIN") or getpass.getuser(),
        **provenance,
    }
    (run / "run.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return run


def write_task_state(run: Path, config_id: str, state: dict) -> None:
    path = Path(run) / "state" / "tasks" / f"{config_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"config_id": config_id, **state}, sort_keys=True))
    os.replace(tmp, path)


def read_task_states(run: Path) -> dict[str, dict]:
    states = {}
    for path in sorted((Path(run) / "state" / "tasks").glob("*.json")):
        try:
            states[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError:  # a task killed mid-write: treat as unknown
            continue
    return states
