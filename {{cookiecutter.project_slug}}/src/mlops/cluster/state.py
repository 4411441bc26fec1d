"""A run's state: the cluster's files (mlops.cluster.reader, checked by records) merged with SLURM's view.

SLURM's word decides: while SLURM knows a job (sacct, else `scontrol show job` for MinJobAge seconds
after its end) its state is the configuration's state (TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL,
BOOT_FAIL, DEADLINE, CANCELLED; a task pending again after it started is "requeued"), and the task
record only adds what SLURM cannot know (exit code, duration; completed vs failed). When SLURM has
forgotten the job, the record is what is left: shell/task.sh wrote there what SLURM said when the
task was signalled (the time limit, a requeue). A run is final when every configuration is in a
state of mlops.rundir.FINAL; a requeued or pending one keeps it open.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from .. import rundir, runid
from ..errors import BadInput
from ..remote import Remote
from . import reader, records, slurm

if TYPE_CHECKING:
    from ..settings import Settings


def _config_state(rec: dict, attempt: int, job: str | None, sched: dict | None, runner_alive: bool | None) -> dict:
    """The state of one configuration whose latest attempt is `attempt` (its SLURM task `job`)."""
    mine = rec if rec and rec.get("attempt", 1) == attempt else {}
    if sched is not None and job is not None and job in sched:
        said = slurm.slurm_state(sched[job])
        if said in ("completed", "failed") and mine.get("status") in rundir.FINAL:
            return dict(mine)  # the record knows completed-with-metrics from failed, and the exit code
        if said == "pending" and mine:  # it started in this attempt and SLURM queued it again
            said = "requeued"
        return {**mine, "status": said, "attempt": attempt}
    # SLURM does not know the job (forgotten after MinJobAge, or scheduler = none): the record decides
    if mine.get("status") in rundir.FINAL:
        return dict(mine)
    gone = runner_alive is False or (job is not None and sched is not None and runner_alive is None)
    if mine.get("status") == "running":  # if the runner or SLURM has forgotten it, it died unseen
        return {**mine, "status": "failed" if gone else "running"}
    if mine.get("status") == "requeued":  # queued again and then forgotten: it never came back
        return {**mine, "status": "cancelled" if gone else "requeued"}
    if runner_alive:
        return {"status": "pending", "attempt": attempt}
    # never started and nobody will start it (stage failed, cancelled, or purged by SLURM)
    return {**rec, "status": "cancelled" if attempt else "pending", "attempt": attempt}


def merge(
    index: list[dict],
    task_records: dict[str, dict],
    attempts: list[dict],
    sched: dict[str, str] | None,
    runner_alive: bool | None = None,
) -> dict[str, dict]:
    """One state per configuration (config id -> {"config_id", "index", "status", ...}) from the task
    records and SLURM's view (`sched` None: SLURM did not answer, so no job counts as forgotten)."""
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
        out[cid] = {"config_id": cid, "index": i, **_config_state(task_records.get(cid) or {}, attempt, job, sched,
                                                                    runner_alive)}  # fmt: skip
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


def status(session: Remote, s: Settings, run_id: str) -> dict:
    """The run's state, read once: {'run_id', 'run_dir', 'cluster', 'stages', 'configs': {cid: state},
    'counts', 'attempts', 'all_attempts', 'progress', 'notify', 'collected', 'submitted', 'pipeline',
    'commit', 'problems'}. Raises BadInput when the run does not exist on the cluster."""
    path = runid.run_dir(s.cluster_root, run_id)
    found, problems = records.clean(reader.read_run(session, path))
    if not found["exists"]:
        raise BadInput(f"run {run_id} does not exist on the cluster ({path}); was it submitted?")
    attempts = [a for a in found["attempts"] if a["status"] == records.SUBMITTED]
    sched = reader.scheduler_view(session, job_ids(attempts)) if any(a["kind"] == "slurm" for a in attempts) else {}
    stages: dict[str, str | None] = {}
    first = attempts[0] if attempts else {}
    for name in ("params", "data"):
        if first.get(name):
            stages[name] = slurm.slurm_state(sched[first[name]]) if sched and first[name] in sched else None
    for name, rc in found["stages"].items():
        stages[name] = "completed" if rc == 0 else "failed"
    index = found["index"]
    if not index and first:  # params has not run yet (or failed): the configurations are known from the submission
        index = [{"index": i, "config_id": cid} for i, cid in enumerate(first.get("config_ids", []))]
    configs = merge(index, found["records"], attempts, sched, found["runner_alive"])
    if any(st in rundir.FINAL and st != "completed" for st in stages.values()):
        for c in configs.values():  # a stage before them ended badly: they will never run
            if c["status"] == "pending":
                c["status"] = "cancelled"
    return {
        "run_id": run_id,
        "run_dir": path,
        "cluster": found["cluster"],
        "stages": stages,
        "configs": configs,
        "counts": rundir.count_states([c["status"] for c in configs.values()]),
        "attempts": attempts,
        "all_attempts": found["attempts"],
        "progress": found["progress"],
        "notify": found["notify"],
        "collected": found["collected"],
        "submitted": bool(attempts),
        "pipeline": found["pipeline"],
        "commit": found["commit"],
        "problems": problems,
    }


def finished(view: dict) -> bool:
    """Every configuration of a submitted run is in a final state (none pending, requeued or running)."""
    return (
        view["submitted"]
        and bool(view["configs"])
        and all(slurm.is_final(c["status"]) for c in view["configs"].values())
    )


def advice(counts: dict[str, int], s: Settings) -> list[str]:
    """One line per state that needs the user ('2 timeout: the task hit its time limit ... (now 01:00:00)')."""
    now = {"timeout": f" (now time = {s.scheduler.time!r})", "out-of-memory": f" (now mem = {s.scheduler.mem!r})"}
    return [f"{n} {st}: {rundir.FIXES[st]}{now.get(st, '')}" for st, n in counts.items() if n and st in rundir.FIXES]


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
    session: Remote, s: Settings, run_id: str, timeout: float, interval: float = 5.0, out: TextIO = sys.stderr
) -> dict:
    """Poll status over the one session until every configuration is final (bounded by timeout, seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        view = status(session, s, run_id)
        if finished(view) or time.monotonic() > deadline:
            return view
        print(f"  waiting: {rundir.format_counts(view['counts'])}", file=out, flush=True)
        time.sleep(interval)
