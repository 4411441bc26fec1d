"""Read a run directory back, validating everything: it was written by student code.

Used on an extracted cluster run (`mlops collect`) and on a local run directory (`mlops run --local`).
Every file is opened relative to the run directory's fd, component by component, with O_NOFOLLOW,
and must be a regular file (no link, FIFO or device is ever opened for reading); JSON is read up to
a byte cap, decoded as strict UTF-8, and parse errors of every kind (bad UTF-8, a 5,000-digit
integer, 100k-deep nesting) become a problem line. A bad configuration gets its reasons in
`problems`; it never hides the others.

Shapes (the contracts of docs/ARCHITECTURE.md):
    envs/index.json         {"configurations": [{"index": int, "config_id": ID, "parameters": {...}}]}
    state/tasks/<ID>.json   {"status": one of rundir.STATES, "exit_code": int, "duration_s": number, ...}
    results/<ID>/metrics.json  {name: number, ...}   (other values are ignored)
    results/<ID>/log        the configuration's output (only its tail is read)
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path

from .. import rundir
from .caps import DEFAULT, Caps
from .text import printable

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

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Unreadable(Exception):
    """A file of the run cannot be used; str() is the reason (safe to print)."""


class RunReader:
    """Read-only access below one run directory, never through a link. Use as a context manager."""

    def __init__(self, run: str | os.PathLike):
        self.path = Path(run)
        self.fd = os.open(run, DIR_FLAGS)

    def __enter__(self):  # -> Self (typing.Self is 3.11+, as is this project)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _walk(self, rel: str) -> tuple[int, str]:
        """(fd of the parent directory, leaf name) of `rel`; the caller closes the fd."""
        parts = [p for p in rel.split("/") if p]
        fd = os.dup(self.fd)
        try:
            for part in parts[:-1]:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError:
            os.close(fd)
            raise
        return fd, parts[-1]

    def read(self, rel: str, max_bytes: int, tail: bool = False) -> bytes | None:
        """The bytes of the regular file `rel` (None if absent); at most max_bytes: the end of it when
        `tail`, else Unreadable if longer. Unreadable for a link, FIFO, device or directory."""
        try:
            parent, leaf = self._walk(rel)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Unreadable(f"{rel}: a parent is not a plain directory ({exc.strerror})") from None
        try:
            try:
                st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return None
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(f"{rel}: not a regular file ({_kind(st.st_mode)})")
            fd = os.open(leaf, FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise Unreadable(f"{rel}: cannot open ({exc.strerror})") from None
        finally:
            os.close(parent)
        with os.fdopen(fd, "rb") as fh:
            st2 = os.fstat(fh.fileno())
            if not stat.S_ISREG(st2.st_mode) or (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
                raise Unreadable(f"{rel}: replaced while read")
            if tail:
                fh.seek(max(0, st2.st_size - max_bytes))
                return fh.read(max_bytes)
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise Unreadable(f"{rel}: larger than {max_bytes:,} bytes")
        return data

    def json(self, rel: str, max_bytes: int) -> object:
        """The JSON document in `rel` (None if absent); Unreadable with the reason otherwise."""
        data = self.read(rel, max_bytes)
        if data is None:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable(f"{rel}: not UTF-8") from None
        try:
            return json.loads(text)
        except RecursionError:
            raise Unreadable(f"{rel}: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, and ints longer than Python's int-string limit
            raise Unreadable(f"{rel}: not valid JSON ({printable(exc, 120)})") from None

    def listdir(self, rel: str) -> list[str]:
        """Names in the directory `rel` ([] if absent or not a plain directory)."""
        try:
            parent, _ = self._walk(rel + "/.")
        except OSError:
            return []
        try:
            return os.listdir(parent)
        finally:
            os.close(parent)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


# ------------------------------------------------------------------ the shapes


def _number(value) -> float | int | None:
    """A finite number, or None (bools, strings, huge ints, NaN and infinities are not measurements)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -INT_LIMIT < value < INT_LIMIT else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _scalar(value) -> bool:
    return isinstance(value, (str, bool)) or _number(value) is not None


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
            isinstance(k, str) and PARAM_NAME.fullmatch(k) and _scalar(v) for k, v in params.items()
        ):
            problems.append(f"{where} ({cid}): 'parameters' must map parameter names to plain values")
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
        value = _number(raw.get(key))
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
        out[printable(name, 100)] = _number(value)
    return out, None


def log_tail(reader: RunReader, cid: str, caps: Caps) -> tuple[bytes, str | None]:
    """The last log_tail_bytes of results/<cid>/log (b"" if absent), and a problem if it is not a file."""
    try:
        return reader.read(f"results/{cid}/log", caps.log_tail_bytes, tail=True) or b"", None
    except Unreadable as exc:
        return b"", str(exc)


def run_rows(run: str | os.PathLike, caps: Caps = DEFAULT, view: dict | None = None) -> tuple[list[dict], list[str]]:
    """One row per well-formed configuration of the index, and the run's own problem lines.

    row: {"config_id", "index", "status", "exit_code", "duration_s", "parameters", "metrics",
    "problems": [reason, ...], "log": bytes (the log's tail; only for configurations that did not complete)}.
    `view` maps config ids to the scheduler's state (mlops.scheduler.status()["configs"]); it wins
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
            if status not in ("completed", "pending", "running") or problems:
                row["log"], problem = log_tail(reader, cid, caps)
                if problem:
                    problems.append(problem)
            rows.append(row)
    return rows, run_problems
