"""`mlops run --local`: the whole sweep on this machine, without containers or accounts.

It runs exactly the stages' entry points (read from their Dockerfiles) in the stage folders, with
the same environment contract the containers get: params -> data -> one model run per env file,
`jobs` at a time, with live progress (mlops.progress). Ctrl-C or SIGTERM stops the training
processes (mlops.children), and the summary of what finished is still written; `--resume` goes on
with the configurations that did not end, `--failed-only` retries every one that did not complete.
One configuration in the foreground, for debugging, is mlops.local_one.

The research code gets an allow-listed environment (mlops.local_env), never a secret. The run
directory is then read back like a collected one (mlops.results.read: written by student code, so validated),
and the run ends with the same table and plot as `mlops collect`.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from . import children, params, rundir, runid, settings, stages
from .errors import BadInput, WorkFailed
from .local_env import stage_env
from .progress import Progress, duration, is_terminal
from .results import outdir, read, reports, table
from .results.plot import plot
from .results.reader import file_tail
from .results.text import printable

PREVIEW_LINES = 5  # of a failed stage's or configuration's log on the console (the reports keep more)
# A configuration in one of these states has ended: --resume keeps it (cancelled ones run again).
ENDED = ("completed", "failed", "timeout", "out-of-memory")


class StageFailed(WorkFailed):
    """A stage of the local run failed (exit 1)."""


class Interrupted(WorkFailed):
    """Ctrl-C or SIGTERM stopped the run after its summary was written; exit 128 + the signal (130, 143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def preview(cfg: settings.Settings, log: Path, lines: int = PREVIEW_LINES) -> str:
    """The end of a log research code wrote, for the console: bounded, printable, never through a link."""
    return file_tail(log, cfg.collect.log_tail_bytes, lines, width=200)


def new_run(cfg: settings.Settings, run_id: str | None, mode: str = "local") -> tuple[Path, str]:
    """Check the parameters file, then make runs/<run id>/ with its run.json (raises BadInput)."""
    params_file = cfg.root / "params" / "parameters.json"
    params.validate(params_file)  # fail before creating anything
    run_id = runid.check(run_id, "--run-id") if run_id else runid.new()
    if (cfg.root / "runs" / run_id).exists():
        raise BadInput(f"--run-id {run_id}: runs/{run_id} exists. Fix: another --run-id, or --resume to go on with it")
    provenance = {
        "mode": mode,
        "commit": rundir.git_commit(cfg.root),
        "pipeline": None,
        "parameters_sha256": params.file_sha256(params_file),
    }
    return rundir.create(cfg.root / "runs", run_id, provenance), run_id


def run_stage(cfg: settings.Settings, name: str, env: dict, run: Path, stopper: children.Stopper, out: TextIO) -> None:
    """Run the params or data stage into state/<name>.log, showing that it is alive (a huge grid takes
    a while); state/<name>.rc records its exit code, and a stage that ended with 0 is not run again."""
    rc_file = run / "state" / f"{name}.rc"
    if rc_file.is_file() and rc_file.read_text().strip() == "0":
        print(f"  {name:<6} done before, kept", file=out)
        return
    child = children.Child(
        stages.entrypoint(cfg.root, stages.BY_NAME[name]), cfg.root / name, env, run / "state" / f"{name}.log"
    )
    tty, shown = is_terminal(out), time.monotonic()
    while (rc := child.poll()) is None:
        if stopper.signum:
            children.stop_all([child], lambda: stopper.urgent)
            again = f"Start again: mlops run --local --resume --run-id {run.name}"
            raise Interrupted(f"{stopper.name} during the {name} stage: nothing was trained. {again}", stopper.signum)
        if time.monotonic() - shown >= (1 if tty else 30):
            shown, last = time.monotonic(), preview(cfg, child.log, 1)
            line = f"  {name:<6} running, {duration(time.time() - child.started)}" + (f": {last[:100]}" if last else "")
            out.write(f"\r\x1b[K{line}" if tty else f"{line}\n")
            out.flush()
        time.sleep(children.POLL_S)
    rc_file.write_text(f"{rc}\n")
    if tty:
        out.write("\r\x1b[K")
    if rc != 0:
        raise StageFailed(f"{name} stage failed (exit {rc}); log {child.log}:\n{preview(cfg, child.log)}")
    print(f"  {name:<6} done in {time.time() - child.started:.1f}s", file=out)


def run_local(
    root: Path | None = None,
    jobs: int = 1,
    run_id: str | None = None,
    out: TextIO = sys.stderr,
    resume: bool = False,
    failed_only: bool = False,
) -> tuple[Path, int]:
    """Run the whole sweep (or, with resume/failed_only, the rest of run `run_id`, default the newest).

    Returns (run dir, number of configurations not completed or bad). Raises BadInput before anything
    is written, StageFailed, or Interrupted (after the summary of what finished is written).
    """
    cfg = settings.load(root)
    if resume or failed_only:
        run = existing_run(cfg.root, run_id)
        run_id = run.name
        print(f"run {run_id}: {run} (going on with it)", file=out)
    else:
        run, run_id = new_run(cfg, run_id)
        print(f"run {run_id}: {run}", file=out)
    env = stage_env(cfg, run, run_id)
    with children.Stopper() as stopper:
        for name in ("params", "data"):
            run_stage(cfg, name, env, run, stopper, out)
        index = _index(run, out)
        todo = _todo(run, index, failed_only) if resume or failed_only else index
        kept = f" ({len(index) - len(todo)} ended before, kept)" if len(todo) < len(index) else ""
        if todo:
            print(f"  model  {len(todo)} configurations, {jobs} at a time{kept}", file=out)
        else:
            print(f"  model  nothing to run: all {len(index)} configurations ended before", file=out)
        progress = _sweep(cfg, run, todo, env, jobs, stopper, out)
    bad = report(cfg, run, out)
    if stopper.signum:
        left = len(todo) - progress.done
        raise Interrupted(
            f"{stopper.name}: {progress.done} of {len(todo)} configurations ended in this run, {left} stopped or "
            f"not started (the summary above counts them as cancelled or pending). "
            f"Go on: mlops run --local --resume --run-id {run_id}",
            stopper.signum,
        )
    return run, bad


def existing_run(root: Path, run_id: str | None) -> Path:
    """runs/<run_id>, or the newest run in runs/; its parameters file must be the one of now (BadInput)."""
    runs = Path(root) / "runs"
    if run_id:
        run = runs / runid.check(run_id, "--run-id")
        if not (run / "run.json").is_file():
            raise BadInput(f"--run-id {run_id}: there is no run {run}. Fix: a name from `ls runs/`")
    else:
        found = [p for p in runs.glob("*/run.json") if p.is_file()] if runs.is_dir() else []
        if not found:
            raise BadInput("--resume/--failed-only: no run in runs/ to go on with. Fix: mlops run --local")
        run = max(found, key=lambda p: p.stat().st_mtime).parent
    try:
        recorded = json.loads((run / "run.json").read_text()).get("parameters_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != params.file_sha256(Path(root) / "params" / "parameters.json"):
        raise BadInput(
            f"params/parameters.json changed since run {run.name} started, so its configurations differ. "
            "Fix: start a new run (mlops run --local), or put the file back as it was"
        )
    return run


def _index(run: Path, out: TextIO) -> list[dict]:
    with read.RunReader(run) as reader:  # written by the params stage: research code, so validated
        index, index_problems = read.index(reader)
    for problem in index_problems:
        print(f"  {printable(problem, 300)}", file=out)
    if not index:
        raise StageFailed(
            "the params stage wrote no usable envs/index.json: "
            + "; ".join(printable(p, 200) for p in index_problems[:3])
        )
    return index


def _todo(run: Path, index: list[dict], failed_only: bool) -> list[dict]:
    """The configurations to run again: every one not completed (failed_only), else every one that has
    not ended (never started, stopped by a signal, or left 'running' by a killed `mlops`)."""
    with read.RunReader(run) as reader:
        states, _ = read.task_states(reader)
    keep = ("completed",) if failed_only else ENDED
    return [e for e in index if states.get(e["config_id"], {}).get("status") not in keep]


def start_one(cfg: settings.Settings, run: Path, cid: str, env: dict) -> children.Child:
    """Start the model stage for configuration `cid` in the background (a fresh results/<cid>/)."""
    env = {**env, **params.read_env_file(run / "envs" / f"{cid}.env")}
    result_dir = run / "results" / cid
    if result_dir.is_dir() and not result_dir.is_symlink():
        shutil.rmtree(result_dir)  # an earlier attempt of this run: its files would mix with the new ones
    result_dir.mkdir(parents=True, exist_ok=True)
    child = children.Child(
        stages.entrypoint(cfg.root, stages.BY_NAME["model"]), cfg.root / "model", env, result_dir / "log", cid
    )
    rundir.write_task_state(run, cid, {"status": "running", "started": child.started})
    return child


def end_one(run: Path, cid: str, rc: int, started: float, status: str | None = None) -> str | None:
    """Record how configuration `cid` ended; returns the reason it failed, or None when it completed."""
    metrics = run / "results" / cid / "metrics.json"
    has_metrics = metrics.is_file() and not metrics.is_symlink()
    reason = None
    if status is None and rc == 0 and not has_metrics:
        reason = read.NO_METRICS
    elif status is None and rc != 0:
        reason = f"exit {rc}" if rc > 0 else f"killed by signal {-rc}"
    state = {
        "status": status or ("failed" if reason else "completed"),
        "exit_code": rc if rc >= 0 else 128 - rc,  # as a shell reports a signal (143: SIGTERM)
        "started": started,
        "duration_s": round(time.time() - started, 3),
    }
    rundir.write_task_state(run, cid, state)
    return reason


def _sweep(cfg, run: Path, todo: list[dict], env: dict, jobs: int, stopper: children.Stopper, out: TextIO) -> Progress:
    progress = Progress(len(todo), jobs, out)
    queue = [e["config_id"] for e in todo]
    running: dict[str, children.Child] = {}
    try:
        while (queue or running) and not stopper.signum:
            ended = [(cid, child, rc) for cid, child in running.items() if (rc := child.poll()) is not None]
            for cid, _, _ in ended:
                del running[cid]
            while queue and len(running) < max(1, jobs):
                child = start_one(cfg, run, queue.pop(0), env)
                running[child.name] = child
            progress.running = len(running)
            for cid, child, rc in ended:
                reason = end_one(run, cid, rc, child.started)
                if reason:
                    log = run / "results" / cid / "log"
                    lines = "".join(f"\n        | {x}" for x in preview(cfg, log).splitlines())
                    progress.say(
                        f"  FAIL {cid} after {duration(time.time() - child.started)}: {reason}; log: {log}{lines}"
                    )
                progress.finished(reason is None, time.time() - child.started)
            progress.tick()
            time.sleep(children.POLL_S)
    finally:
        if running:  # a signal, or an error of ours: never leave training processes behind
            progress.say(f"  {stopper.name or 'stopping'}: stopping {len(running)} running configuration(s)")
            children.stop_all(list(running.values()), lambda: stopper.urgent)
            for cid, child in running.items():
                rc = child.proc.returncode
                end_one(run, cid, rc, child.started, status=None if rc == 0 else "cancelled")
        progress.close()
    return progress


def report(cfg: settings.Settings, run: Path, out: TextIO) -> int:
    """Read the run back (untrusted), write summary.json/.csv and the plot, print the end table.

    Returns the number of configurations not completed or bad, plus the run's own problems."""
    rows, problems = read.run_rows(run, cfg.collect)
    bad = sum(r["status"] != "completed" or bool(r["problems"]) for r in rows) + len(problems)
    files = {
        "summary.json": reports.summary_json(rows, run.name, problems),
        "summary.csv": reports.summary_csv(rows),
    }
    try:
        files["sweep.png"] = plot(rows)
    except Exception as exc:  # noqa: BLE001 (a plot must never cost the summary; no matplotlib: pip install .[report])
        print(f"  sweep.png not drawn ({type(exc).__name__}: {printable(exc, 100)})", file=out)
    where = run / "results"
    try:
        outdir.write_all(where, files, cfg.root)
    except (OSError, BadInput):  # the research code replaced results/ by something else: write beside it
        where = run
        outdir.write_all(where, files, cfg.root)
    print(f"  {sum(r['status'] == 'completed' for r in rows)}/{len(rows)} completed", file=out)
    plot_path = str(where / "sweep.png") if "sweep.png" in files else None
    print(table.table(rows, problems, plot_path, str(where / "summary.csv")), end="", file=out)
    return bad
