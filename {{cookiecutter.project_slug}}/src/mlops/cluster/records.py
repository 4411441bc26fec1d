"""The run's state as read from the cluster, every field checked: untrusted data in, clean data out.

The run directory (docs/ARCHITECTURE.md) holds state/jobs.json (the attempts, written by
mlops.cluster.submit), state/tasks/<config-id>.json (written by shell/task.sh), state/<stage>.rc,
state/notify.json (shell/notify.sh), state/collected.json (mlops.cluster.runs) and envs/ids.txt
(written by the params container). Another user of the account, a full disk, a crashed writer or the
research code can leave any of them malformed: every field is checked here (ids fullmatch their
pattern, pids and indices are ints, states are mlops.rundir.STATES), a bad record is dropped and
reported in `problems`, never a crash and never a shell word.
"""

from __future__ import annotations

import re

from .. import rundir
from . import slurm

CONFIG_ID = re.compile(r"[0-9a-f]{6,64}")
_CLUSTER = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # a cluster name of mlops.toml (checked there)
SUBMITTING, SUBMITTED = "submitting", "submitted"
_RECORD_KEYS = ("attempt", "status", "job", "exit_code", "duration_s", "started", "restarts")


def _int(value: object, low: int = 0) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= low else None


def _job(value: object) -> str | None:
    return str(value) if isinstance(value, (str, int)) and slurm.JOB_ID.fullmatch(str(value)) else None


def clean_attempt(a: object) -> dict | None:
    """One attempt of state/jobs.json with only checked fields, or None when it cannot be trusted."""
    if not isinstance(a, dict) or _int(a.get("attempt"), 1) is None or a.get("kind") not in ("slurm", "none"):
        return None
    out = {"attempt": a["attempt"], "kind": a["kind"], "status": a.get("status", SUBMITTED)}
    if out["status"] not in (SUBMITTING, SUBMITTED):
        return None
    indices = a.get("indices", [])
    if not isinstance(indices, list) or any(_int(i) is None for i in indices):
        return None
    out["indices"] = indices
    ids = a.get("config_ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(c, str) and CONFIG_ID.fullmatch(c) for c in ids):
            return None
        out["config_ids"] = ids
    for name in ("params", "data", "notify"):
        if a.get(name) is not None:
            if _job(a[name]) is None:
                return None
            out[name] = _job(a[name])
    model = []
    for chunk in a.get("model", []) if isinstance(a.get("model", []), list) else [None]:
        if not isinstance(chunk, dict) or _int(chunk.get("offset")) is None:
            return None
        job = _job(chunk.get("job")) if chunk.get("job") is not None else None
        if chunk.get("job") is not None and job is None:
            return None
        chunk_indices = chunk.get("indices")
        if not isinstance(chunk_indices, list) or any(_int(i) is None for i in chunk_indices):
            return None
        model.append({"job": job, "offset": chunk["offset"], "indices": chunk_indices})
    out["model"] = model
    if a.get("pid") is not None:
        if _int(a["pid"], 2) is None:
            return None
        out["pid"] = a["pid"]
    for key in ("max_array_size", "submitted"):
        if isinstance(a.get(key), (int, float)) and not isinstance(a.get(key), bool):
            out[key] = a[key]
    return out


def _attempts(raw: object, problems: list[str]) -> list[dict]:
    if raw is not None and not isinstance(raw, list):
        problems.append("state/jobs.json: not a list; ignored")
    attempts = []
    for a in raw if isinstance(raw, list) else []:
        checked = clean_attempt(a)
        if checked is None:
            problems.append("state/jobs.json: a malformed attempt record was ignored")
        else:
            attempts.append(checked)
    return attempts


def _index(raw: object, problems: list[str]) -> list[dict]:
    index = []
    for entry in raw if isinstance(raw, list) else []:
        if (
            isinstance(entry, dict)
            and _int(entry.get("index")) is not None
            and isinstance(entry.get("config_id"), str)
            and CONFIG_ID.fullmatch(entry["config_id"])
        ):
            index.append({"index": entry["index"], "config_id": entry["config_id"]})
        else:
            problems.append("envs/ids.txt: a malformed line was ignored")
    return index


def _records(raw: object, problems: list[str]) -> dict[str, dict]:
    records = {}
    for cid, rec in (raw if isinstance(raw, dict) else {}).items():
        if rec is None:
            continue  # unreadable: already in "bad"
        if (
            not CONFIG_ID.fullmatch(str(cid))
            or not isinstance(rec, dict)
            or rec.get("status") not in rundir.STATES
            or _int(rec.get("attempt", 1), 1) is None
        ):
            problems.append(f"state/tasks/{str(cid)[:70]!r}: a malformed task record was ignored")
            continue
        records[cid] = {
            k: v
            for k, v in rec.items()
            if k in _RECORD_KEYS and isinstance(v, (str, int, float)) and (not isinstance(v, str) or len(v) < 100)
        }
    return records


def _notify(raw: object, problems: list[str]) -> dict | None:
    if isinstance(raw, dict) and raw.get("status") in ("sent", "failed", "skipped"):
        return {
            "status": raw["status"],
            "http_status": _int(raw.get("http_status")) or 0,
            "error": str(raw.get("error", ""))[:300],
        }
    if raw is not None:
        problems.append("state/notify.json: malformed; ignored")
    return None


def clean(remote: dict) -> tuple[dict, list[str]]:
    """mlops.cluster.reader.read_run's answer with every field checked -> (clean state, problems as lines)."""
    problems = [f"unreadable {b}" for b in remote.get("bad", []) if isinstance(b, str)][:20]
    stages: dict = remote["stages"] if isinstance(remote.get("stages"), dict) else {}
    progress = {}
    for attempt, lines in (remote.get("progress") or {}).items():
        if str(attempt).isdigit() and isinstance(lines, list):
            progress[int(attempt)] = slurm.parse_submitted([str(x) for x in lines])
    alive = remote.get("runner_alive")
    run: dict = remote["run"] if isinstance(remote.get("run"), dict) else {}
    commit = run.get("commit") if isinstance(run.get("commit"), str) and len(run["commit"]) <= 64 else None
    pipeline = str(run.get("pipeline")) if str(run.get("pipeline")).isdigit() else None
    cluster = run.get("cluster") if isinstance(run.get("cluster"), str) and _CLUSTER.fullmatch(run["cluster"]) else None
    return {
        "exists": remote.get("exists") is True,
        "attempts": _attempts(remote.get("attempts"), problems),
        "index": _index(remote.get("index") or [], problems),
        "records": _records(remote.get("records"), problems),
        "stages": {k: v for k, v in stages.items() if k in ("params", "data") and _int(v) is not None},
        "notify": _notify(remote.get("notify"), problems),
        "collected": isinstance(remote.get("collected"), dict),
        "progress": progress,
        "runner_alive": alive if isinstance(alive, bool) else None,
        "commit": commit,
        "pipeline": pipeline,
        "cluster": cluster,
    }, problems
