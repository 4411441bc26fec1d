"""Read a run directory back, validating everything: it was written by student code.

Used on an extracted cluster run (`mlops collect`) and on a local run directory (`mlops run --local`).
Files are read through reader.RunReader (never through a link, capped, strict JSON); every problem
becomes a problem line. A bad configuration gets its reasons in `problems`; it never hides the others.

Shapes (the contracts of docs/ARCHITECTURE.md):
    envs/index.json         {"configurations": [{"index": int, "config_id": ID, "parameters": {...}}]}
    state/tasks/<ID>.json   {"status": one of rundir.STATES, "exit_code": int, "duration_s": number, ...}
    results/<ID>/metrics.json  {name: number, ...}   (other values are ignored)
    results/<ID>/log        the configuration's output (only its tail is read)
"""

from __future__ import annotations

import math
import os
import re

from .. import rundir
from ..settings import Collect
from .reader import RunReader, Unreadable
from .text import printable, visible

# The reason given when a configuration's program ended well but left no metrics (the local runner and
# task.sh both record such a task as failed with exit code 0).
NO_METRICS = "exit 0 but no metrics.json was written: write RESULT_DIR/metrics.json"
ID = re.compile(r"[0-9a-f]{10}")  # mlops.params.config_id: the first 10 hex digits of a sha256
PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # mlops.params.NAME_PATTERN
INDEX_MAX_BYTES = 64 << 20
RECORD_MAX_BYTES = 64 << 10
METRICS_MAX_BYTES = 1 << 20
RUN_MAX_BYTES = 1 << 20
MAX_METRICS = 1000  # per configuration
INT_LIMIT = 1 << 63  # ints beyond this are not measurements

# ------------------------------------------------------------------ the shapes


def finite(value: object) -> float | int | None:
    """A finite number, or None (bools, strings, huge ints, NaN and infinities are not measurements)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -INT_LIMIT < value < INT_LIMIT else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def plain_value(value: object) -> bool:
    """A parameter value: a number, a bool, or one line of visible text (no control, format or bidi
    character: the params schema allows none, and the value travels into every report)."""
    if isinstance(value, str):
        return len(value) <= 1000 and visible(value)
    return isinstance(value, bool) or finite(value) is not None


def index(reader: RunReader) -> tuple[list[dict], list[str]]:
    """The configurations of envs/index.json that are well-formed, and a problem line for each other one."""
    try:
        doc = reader.json("envs/index.json", INDEX_MAX_BYTES)
    except Unreadable as exc:
        return [], [str(exc)]
    if doc is None:
        return [], ["envs/index.json: missing (the params stage has not run, or failed)"]
    configs = doc.get("configurations") if isinstance(doc, dict) else None
    if not isinstance(configs, list):
        return [], ["envs/index.json: no 'configurations' list"]
    entries, problems, seen_ids, seen_indices = [], [], set(), set()
    for n, e in enumerate(configs):
        where = f"envs/index.json entry {n}"
        if not isinstance(e, dict):
            problems.append(f"{where}: not an object")
            continue
        i, cid, params = e.get("index"), e.get("config_id"), e.get("parameters")
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < INT_LIMIT:
            problems.append(f"{where}: 'index' missing or not a whole number >= 0")
        elif not isinstance(cid, str) or not ID.fullmatch(cid):
            problems.append(f"{where}: 'config_id' {printable(cid, 40)} is not 10 hex digits")
        elif cid in seen_ids or i in seen_indices:
            problems.append(f"{where}: config id {cid} or index {i} given twice")
        elif not isinstance(params, dict) or not all(
            isinstance(k, str) and PARAM_NAME.fullmatch(k) and plain_value(v) for k, v in params.items()
        ):
            problems.append(f"{where} ({cid}): 'parameters' must map parameter names to plain visible values")
        else:
            seen_ids.add(cid)
            seen_indices.add(i)
            entries.append({"index": i, "config_id": cid, "parameters": params})
    return sorted(entries, key=lambda e: e["index"]), problems


def task_state(raw: object) -> tuple[dict, str | None]:
    """A task record (or a scheduler view of one) reduced to validated fields; (state, problem)."""
    if not isinstance(raw, dict):
        return {}, "task record is not an object"
    state, problem = {}, None
    status = raw.get("status")
    if status in rundir.STATES:
        state["status"] = status
    elif status is not None:
        problem = f"task record status {printable(status, 40)} is not one of {', '.join(rundir.STATES)}"
    for key in ("exit_code", "attempt"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and -INT_LIMIT < value < INT_LIMIT:
            state[key] = value
    for key in ("duration_s", "started"):
        value = finite(raw.get(key))
        if value is not None and value >= 0:
            state[key] = value
    return state, problem


def task_states(reader: RunReader) -> tuple[dict[str, dict], dict[str, str]]:
    """{config id: state} from state/tasks/<ID>.json, and {config id: problem} for the unusable ones."""
    states, problems = {}, {}
    for name in reader.listdir("state/tasks"):
        cid = name[:-5] if name.endswith(".json") else ""
        if not ID.fullmatch(cid):
            continue  # temp files and foreign names are not records
        try:
            state, problem = task_state(reader.json(f"state/tasks/{name}", RECORD_MAX_BYTES))
        except Unreadable as exc:
            state, problem = {}, str(exc)
        states[cid] = state
        if problem:
            problems[cid] = problem
    return states, problems


def metrics(reader: RunReader, cid: str) -> tuple[dict[str, float | int | None] | None, str | None]:
    """results/<cid>/metrics.json as {name: finite number or None (NaN/inf)}; (None, None) when absent.

    Names are made printable (control characters escaped) and at most 100 characters; values that
    are not numbers (strings, lists, objects) are left out, as before.
    """
    rel = f"results/{cid}/metrics.json"
    try:
        doc = reader.json(rel, METRICS_MAX_BYTES)
    except Unreadable as exc:
        return None, str(exc)
    if doc is None:
        return None, None
    if not isinstance(doc, dict):
        return None, f"{rel}: not a JSON object"
    out: dict[str, float | int | None] = {}
    for name, value in list(doc.items())[:MAX_METRICS]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[printable(name, 100)] = finite(value)
    return out, None


def provenance(reader: RunReader) -> dict[str, str | None]:
    """run.json reduced to what reports show: {"commit", "pipeline", "created", "mode", "cluster",
    "run_id"}, each a printable string of at most 80 characters, or None when absent or not text."""
    try:
        doc = reader.json("run.json", RUN_MAX_BYTES)
    except Unreadable:
        doc = None
    out: dict[str, str | None] = {}
    for key in ("commit", "pipeline", "created", "mode", "cluster", "run_id"):
        value = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        out[key] = printable(value, 80) if isinstance(value, str) and value else None
    return out


def log_tail(reader: RunReader, cid: str, caps: Collect) -> tuple[bytes, str | None]:
    """The last log_tail_bytes of results/<cid>/log (b"" if absent), and a problem if it is not a file."""
    try:
        return reader.read(f"results/{cid}/log", caps.log_tail_bytes, tail=True) or b"", None
    except Unreadable as exc:
        return b"", str(exc)


def run_rows(run: int | str | os.PathLike, caps: Collect, view: dict | None = None) -> tuple[list[dict], list[str]]:
    """One row per well-formed configuration of the index, and the run's own problem lines.

    row: {"config_id", "index", "status", "exit_code", "duration_s", "parameters", "metrics",
    "problems": [reason, ...], "log": bytes (the log's tail; only for configurations that did not complete)}.
    `view` maps config ids to the scheduler's state (mlops.cluster.state.status()["configs"]); it wins
    over the task record, which cannot say timeout, out-of-memory or cancelled-while-pending.
    """
    with RunReader(run) as reader:
        entries, run_problems = index(reader)
        records, record_problems = task_states(reader)
        rows = []
        for entry in entries:
            cid = entry["config_id"]
            problems = [record_problems[cid]] if cid in record_problems else []
            state = records.get(cid, {})
            if view and cid in view:
                seen, problem = task_state(view[cid])
                state = {**state, **seen}
                if problem:
                    problems.append(f"cluster state: {problem}")
            found, problem = metrics(reader, cid)
            if problem:
                problems.append(problem)
            status = state.get("status") or ("completed" if found is not None else "pending")
            row = {
                "config_id": cid,
                "index": entry["index"],
                "status": status,
                "exit_code": state.get("exit_code"),
                "duration_s": state.get("duration_s"),
                "parameters": entry["parameters"],
                "metrics": found or {},
                "problems": problems,
                "log": b"",
            }
            if status == "completed" and found is None and not problem:
                problems.append(f"results/{cid}/metrics.json: missing although the task completed")
            elif status == "failed" and found is None and not problem and state.get("exit_code") == 0:
                problems.append(NO_METRICS)
            if (status in rundir.FINAL and status != "completed") or problems:
                row["log"], problem = log_tail(reader, cid, caps)
                if problem:
                    problems.append(problem)
            rows.append(row)
    return rows, run_problems
