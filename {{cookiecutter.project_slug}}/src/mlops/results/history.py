"""The runs this project knows on this machine (`mlops runs`), and finding one by name (`mlops compare`).

Two places, both below the project directory (never through a link: every directory is opened from
the project's fd with O_NOFOLLOW):

    runs/<run-id>/                 `mlops run --local` (cluster "local"; reports in results/)
    results/<cluster>/<run-id>/    `mlops collect --out results/` (reports beside what came back)

A run is read from its summary.json when there is one (collect merged the scheduler's word into it:
timeout, out-of-memory, cancelled), else from the run directory itself (mlops.results.read). Both were
within reach of research code, so both are validated like everything else read back: ids, states,
parameter values, finite numbers; a bad row is left out with a problem line.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .. import rundir, runid
from ..errors import BadInput
from ..settings import Settings
from . import read
from .reader import DIR_FLAGS, RunReader, Unreadable
from .text import printable

LOCAL = "local"  # the cluster name of `mlops run --local` runs
SUMMARY_MAX_BYTES = 256 << 20


@dataclass
class Run:
    """One run found on this machine: where, its provenance (read.provenance), its validated rows."""

    where: str  # relative to the project: runs/<id> or results/<cluster>/<id>
    run_id: str
    cluster: str
    about: dict[str, str | None]
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """How `mlops compare` names it without ambiguity: <cluster>/<run-id>."""
        return f"{self.cluster}/{self.run_id}"


def _subdirs(dir_fd: int, name: str) -> tuple[int, list[str]] | None:
    """(fd, names of the plain directories in it) of `name` in `dir_fd`; None when it is not one."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    found = []
    for entry in sorted(os.listdir(fd)):
        try:
            if runid.valid(entry) and stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                found.append(entry)
        except OSError:
            continue
    return fd, found


def _places(root: Path) -> list[tuple[str, str, int, str]]:
    """(cluster, run id, fd of the directory holding the run, where) for every run below `root`."""
    out: list[tuple[str, str, int, str]] = []
    root_fd = os.open(root, DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        local = _subdirs(root_fd, "runs")
        if local:
            out += [(LOCAL, run_id, os.dup(local[0]), f"runs/{run_id}") for run_id in local[1]]
            os.close(local[0])
        results = _subdirs(root_fd, "results")
        if results:
            for cluster in results[1]:
                runs = _subdirs(results[0], cluster)
                if runs:
                    out += [(cluster, r, os.dup(runs[0]), f"results/{cluster}/{r}") for r in runs[1]]
                    os.close(runs[0])
            os.close(results[0])
    finally:
        os.close(root_fd)
    return out


def load(parent_fd: int, run_id: str, cluster: str, where: str, cfg: Settings) -> Run | None:
    """The run `run_id` in the directory `parent_fd` (None when it holds no run: no run.json, no index)."""
    try:
        run_fd = os.open(run_id, DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None
    try:
        with RunReader(run_fd) as reader:
            if not reader.listdir("envs") and reader.read("run.json", read.RUN_MAX_BYTES) is None:
                return None
            run = Run(where, run_id, cluster, read.provenance(reader))
            summary = "summary.json" if cluster != LOCAL else "results/summary.json"
            try:
                doc = reader.json(summary, SUMMARY_MAX_BYTES)
            except Unreadable as exc:
                doc, run.problems = None, [str(exc)]
        if isinstance(doc, dict):
            run.rows, problems = rows_of_summary(doc)
            run.problems += problems
        else:
            run.rows, problems = read.run_rows(run_fd, cfg.collect)
            run.problems += problems
        return run
    finally:
        os.close(run_fd)


def rows_of_summary(doc: dict) -> tuple[list[dict], list[str]]:
    """The configurations of a summary.json (reports.summary_json) that pass read's checks."""
    rows, problems = [], []
    configs = doc.get("configurations")
    for n, raw in enumerate(configs if isinstance(configs, list) else []):
        row = _row(raw)
        if row is None:
            problems.append(f"summary.json configuration {n}: malformed, left out")
        else:
            rows.append(row)
    return rows, problems


def _row(raw: object) -> dict | None:
    if not isinstance(raw, dict):
        return None
    cid, params, metrics = raw.get("config_id"), raw.get("parameters"), raw.get("metrics")
    state, problem = read.task_state(raw)
    if problem or "status" not in state or not isinstance(cid, str) or not read.ID.fullmatch(cid):
        return None
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and read.PARAM_NAME.fullmatch(k) and read.plain_value(v) for k, v in params.items()
    ):
        return None
    if not isinstance(metrics, dict):
        return None
    index = raw.get("index")
    problems = raw.get("problems")
    return {
        "config_id": cid,
        "index": index if isinstance(index, int) and not isinstance(index, bool) else 0,
        "status": state["status"],
        "exit_code": state.get("exit_code"),
        "duration_s": state.get("duration_s"),
        "parameters": params,
        "metrics": {printable(k, 100): read.finite(v) for k, v in list(metrics.items())[: read.MAX_METRICS]},
        "problems": [printable(p, 300) for p in problems[:20]] if isinstance(problems, list) else [],
        "log": b"",
    }


def find(cfg: Settings) -> list[Run]:
    """Every run below the project directory, oldest first (by run.json "created", then name)."""
    runs = []
    for cluster, run_id, parent_fd, where in _places(cfg.root):
        try:
            run = load(parent_fd, run_id, cluster, where, cfg)
        finally:
            os.close(parent_fd)
        if run is not None:
            runs.append(run)
    return sorted(runs, key=lambda r: (r.about.get("created") or "", r.where))


def resolve(cfg: Settings, ref: str, runs: list[Run] | None = None) -> Run:
    """The run named by `ref`: `<run-id>`, `<cluster>/<run-id>` (`local/<run-id>` for runs/), or its
    place (`runs/<id>`, `results/<cluster>/<id>`). BadInput names the runs there are, or the candidates."""
    runs = find(cfg) if runs is None else runs
    text = ref.strip().rstrip("/")
    found = [r for r in runs if text in (r.where, r.ref, r.run_id)]
    if len(found) == 1:
        return found[0]
    if found:
        raise BadInput(
            f"run {printable(ref, 80)} is on {len(found)} clusters: name one of {', '.join(r.ref for r in found)}"
        )
    known = ", ".join(r.ref for r in runs[-10:]) or "none (mlops run --local, or mlops collect --out results/)"
    raise BadInput(f"no run {printable(ref, 80)} in runs/ or results/<cluster>/. Runs here: {known}")


def counts(run: Run) -> dict[str, int]:
    """State -> number of configurations of the run."""
    return rundir.count_states([r["status"] for r in run.rows])
