"""A run's state on the cluster: read as untrusted data, validated, merged with the scheduler's view.

The run directory (docs/ARCHITECTURE.md) holds state/jobs.json (the attempts, written by
mlops.cluster.submit), state/tasks/<config-id>.json (written by shell/task.sh), state/<stage>.rc,
state/notify.json (shell/notify.sh) and state/collected.json (mlops.cluster.runs). Another user of the
account, a full disk or a crashed writer can leave any of them malformed: every field is checked here
(ids fullmatch their pattern, pids and indices are ints), a bad record is dropped and reported in
`problems`, never a crash and never a shell word.
"""

from __future__ import annotations

import json
import re
import sys
import time
from importlib import resources
from typing import TYPE_CHECKING, TextIO

from .. import rundir, runid
from ..errors import BadInput
from ..remote import Remote
from . import slurm

if TYPE_CHECKING:
    from ..settings import Settings


CONFIG_ID = re.compile(r"[0-9a-f]{6,64}")
SUBMITTING, SUBMITTED = "submitting", "submitted"


def read_remote(session: Remote, path: str, mode: str = "run") -> dict:
    """Run shell/read_state.py on the login node (python3 there; nothing is installed)."""
    script = resources.files(__package__).joinpath("shell/read_state.py").read_text()
    try:
        doc = json.loads(session.python(script, mode, path))
    except ValueError:
        doc = None
    return doc if isinstance(doc, dict) else {}


def _int(value, low: int = 0) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= low else None


def _job(value) -> str | None:
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


def clean(remote: dict) -> tuple[dict, list[str]]:
    """The reader's answer with every field checked -> (clean state, problems as lines)."""
    problems = [f"unreadable {b}" for b in remote.get("bad", []) if isinstance(b, str)][:20]
    attempts = []
    raw_attempts = remote.get("attempts")
    for a in raw_attempts if isinstance(raw_attempts, list) else []:
        checked = clean_attempt(a)
        if checked is None:
            problems.append("state/jobs.json: a malformed attempt record was ignored")
        else:
            attempts.append(checked)
    if raw_attempts is not None and not isinstance(raw_attempts, list):
        problems.append("state/jobs.json: not a list; ignored")
    index = []
    for entry in remote.get("index") or [] if isinstance(remote.get("index") or [], list) else []:
        if (
            isinstance(entry, dict)
            and _int(entry.get("index")) is not None
            and isinstance(entry.get("config_id"), str)
            and CONFIG_ID.fullmatch(entry["config_id"])
        ):
            index.append({"index": entry["index"], "config_id": entry["config_id"]})
        else:
            problems.append("envs/index.json: a malformed entry was ignored")
    records = {}
    raw_records: dict = remote["records"] if isinstance(remote.get("records"), dict) else {}
    for cid, rec in raw_records.items():
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
            if k in ("attempt", "status", "job", "exit_code", "duration_s", "started")
            and isinstance(v, (str, int, float))
            and (not isinstance(v, str) or len(v) < 100)
        }
    stages = {k: v for k, v in (remote.get("stages") or {}).items() if k in ("params", "data") and _int(v) is not None}
    notify = remote.get("notify")
    if isinstance(notify, dict) and notify.get("status") in ("sent", "failed", "skipped"):
        notify = {
            "status": notify["status"],
            "http_status": _int(notify.get("http_status")) or 0,
            "error": str(notify.get("error", ""))[:300],
        }
    elif notify is not None:
        problems.append("state/notify.json: malformed; ignored")
        notify = None
    progress = {}
    for attempt, lines in (remote.get("progress") or {}).items():
        if str(attempt).isdigit() and isinstance(lines, list):
            progress[int(attempt)] = slurm.parse_submitted([str(x) for x in lines])
    alive = remote.get("runner_alive")
    run: dict = remote["run"] if isinstance(remote.get("run"), dict) else {}
    commit = run.get("commit") if isinstance(run.get("commit"), str) and len(run["commit"]) <= 64 else None
    pipeline = str(run.get("pipeline")) if str(run.get("pipeline")).isdigit() else None
    return {
        "exists": remote.get("exists") is True,
        "attempts": attempts,
        "index": index,
        "records": records,
        "stages": stages,
        "notify": notify,
        "collected": isinstance(remote.get("collected"), dict),
        "progress": progress,
        "runner_alive": alive if isinstance(alive, bool) else None,
        "commit": commit,
        "pipeline": pipeline,
    }, problems


def merge(
    index: list[dict],
    records: dict[str, dict],
    attempts: list[dict],
    sched: dict[str, str],
    runner_alive: bool | None = None,
) -> dict[str, dict]:
    """One state per configuration from the task records and the scheduler's view.

    A task record of the latest attempt that is final wins; a record saying running is overruled by
    a final scheduler state (timeout, out-of-memory, cancelled: the wrapper was killed).
    """
    latest: dict[int, tuple[int, str | None]] = {}
    for a in attempts:
        for chunk in a.get("model", []):
            for i in chunk["indices"]:
                job = f"{chunk['job']}_{i - chunk['offset']}" if chunk.get("job") else None
                latest[i] = (a["attempt"], job)
    out = {}
    for entry in index:
        i, cid = entry["index"], entry["config_id"]
        attempt, job = latest.get(i, (0, None))
        rec = records.get(cid) or {}
        s = slurm.slurm_state(sched[job]) if job and job in sched else None
        if rec.get("attempt", 1) == attempt and rec.get("status") in slurm.TERMINAL:
            state = dict(rec)
        elif s in slurm.TERMINAL and s != "completed":
            state = {**rec, "status": s, "attempt": attempt}
        elif rec.get("attempt", 1) == attempt and rec.get("status") == "running":
            # running per its record; if the runner (none) or SLURM has forgotten it, it died unseen
            gone = (runner_alive is False) or (job is not None and s is None and runner_alive is None)
            state = {**rec, "status": "failed" if gone else "running"}
        elif s is not None:
            state = {**rec, "status": s, "attempt": attempt}
        elif runner_alive:
            state = {"status": "pending", "attempt": attempt}
        else:
            # never started and nobody will start it (stage failed, cancelled, or purged by SLURM)
            state = {**rec, "status": "cancelled" if attempt else "pending", "attempt": attempt}
        out[cid] = {"config_id": cid, "index": i, **state}
    return out


def job_ids(attempts: list[dict]) -> list[str]:
    """Every SLURM job id of these attempts (validated ids)."""
    return [
        x
        for a in attempts
        if a["kind"] == "slurm"
        for x in [a.get("params"), a.get("data"), *(c["job"] for c in a["model"]), a.get("notify")]
        if x
    ]


def status(session: Remote, cfg: Settings, run_id: str) -> dict:  # cfg: mlops.settings.Settings
    """The run's state: {'run_id', 'run_dir', 'stages', 'configs': {cid: state}, 'counts', 'attempts',
    'notify', 'collected', 'submitted', 'problems'}. Raises BadInput when the run does not exist."""
    path = runid.run_dir(cfg.cluster_root, run_id)
    state, problems = clean(read_remote(session, path))
    if not state["exists"]:
        raise BadInput(f"run {run_id} does not exist on the cluster ({path}); was it submitted?")
    attempts = [a for a in state["attempts"] if a["status"] == SUBMITTED]
    sched = slurm.scheduler_view(session, job_ids(attempts)) if any(a["kind"] == "slurm" for a in attempts) else {}
    stage_states: dict[str, str | None] = {}
    first = attempts[0] if attempts else {}
    for name in ("params", "data"):
        if first.get(name):
            stage_states[name] = slurm.slurm_state(sched[first[name]]) if first[name] in sched else None
    for name, rc in state["stages"].items():
        stage_states[name] = "completed" if rc == 0 else "failed"
    index = state["index"]
    if not index and first:  # params has not run yet (or failed): the configurations are known from the submission
        index = [{"index": i, "config_id": cid} for i, cid in enumerate(first.get("config_ids", []))]
    configs = merge(index, state["records"], attempts, sched, state["runner_alive"])
    if any(s == "failed" for s in stage_states.values()):
        for c in configs.values():
            if c["status"] == "pending":
                c["status"] = "cancelled"
    counts = {s: sum(c["status"] == s for c in configs.values()) for s in rundir.STATES}
    return {
        "run_id": run_id,
        "run_dir": path,
        "stages": stage_states,
        "configs": configs,
        "counts": counts,
        "attempts": attempts,
        "all_attempts": state["attempts"],
        "progress": state["progress"],
        "notify": state["notify"],
        "collected": state["collected"],
        "submitted": bool(attempts),
        "pipeline": state["pipeline"],
        "commit": state["commit"],
        "problems": problems,
    }


def finished(view: dict) -> bool:
    """Every configuration of a submitted run is in a final state."""
    return (
        view["submitted"]
        and bool(view["configs"])
        and all(c["status"] in slurm.TERMINAL for c in view["configs"].values())
    )


def format_counts(counts: dict) -> str:
    """{'completed': 3, 'failed': 1, ...} -> '3 completed, 1 failed'."""
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no configurations"


def format_notify(notify: dict | None) -> str:
    """One line about the notification of a run (never a token: notify.sh never records one)."""
    if not notify:
        return "not sent yet"
    if notify["status"] == "sent":
        return f"sent (HTTP {notify['http_status']})"
    return f"{notify['status']}: {notify['error']}" + (
        f" (HTTP {notify['http_status']})" if notify["http_status"] and "HTTP" not in notify["error"] else ""
    )


def wait(
    session: Remote, cfg: Settings, run_id: str, timeout: float, interval: float = 5.0, out: TextIO = sys.stderr
) -> dict:
    """Poll status over the one session until every configuration is final (bounded by timeout, seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        view = status(session, cfg, run_id)
        if finished(view) or time.monotonic() > deadline:
            return view
        print(f"  waiting: {format_counts(view['counts'])}", file=out, flush=True)
        time.sleep(interval)
