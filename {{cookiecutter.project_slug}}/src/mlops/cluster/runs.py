"""Which runs to collect, and the "collected" marker (issues 12, 17).

  one run (`mlops collect [--run-id X]`, by hand): collect it, final or not (partial results are
      fine); with `require_final` a run that is not final is refused before any download;
  every final run (`mlops collect --all-final --cluster NAME`: the pipeline a notification or the
      schedule started): each run of this project on that cluster that is final and has no
      state/collected.json yet, one after another. The cluster's own state decides; the pipeline
      passes no run id. A run with a pending, requeued or running configuration is not final.
A final run that was collected gets state/collected.json (when, by which pipeline) and loses its
trigger token (once, before the download: nothing will notify any more); so a second pipeline
collects nothing. Each run's state is read over SSH once (mlops.cluster.state.status), and that view
is what the download and the reports use (mlops.results.collect).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import civars, rundir, runid
from ..errors import BadInput, MlopsError, WorkFailed
from ..remote import Remote
from . import notify, reader, state

if TYPE_CHECKING:
    from ..settings import Settings


def unattended_skip(s: Settings, env: Mapping[str, str] = os.environ) -> str | None:
    """Why an unattended collect (a triggered or scheduled pipeline) cannot log in to this cluster,
    or None when it can: a login that asks for a one-time code needs HPC_TOTP_SECRET, because nobody
    is there to type one."""
    if s.cluster.auth in civars.CODE_AUTH and not env.get(civars.TOTP):
        return (
            f"its login (auth = {s.cluster.auth!r}) asks for a one-time code and {civars.TOTP} is not set, "
            "so only a person can log in: collect it with the manual collect job (typed HPC_OTP)"
        )
    return None


def mark_collected(session: Remote, view: dict, env: Mapping[str, str] = os.environ) -> None:
    """state/collected.json for a final run that was collected (when, by which pipeline and job)."""
    record = {"at": time.time(), "pipeline": env.get("CI_PIPELINE_ID"), "job": env.get("CI_JOB_ID")}
    session.write_file(f"{view['run_dir']}/state/collected.json", json.dumps(record).encode(), 0o600)


def _results_view(view: dict) -> tuple[dict | None, str | None]:
    """The view the reports may trust, or (None, why): a malformed part of the state means the task
    records that come back are used instead, and the problem is reported."""
    if view["problems"]:
        why = "; ".join(view["problems"])[:200]
        return (
            None,
            f"the cluster's state of the run could not be read ({why}); the task records that came back are used",
        )
    return view, None


def collect_view(
    session: Remote, s: Settings, view: dict, out_dir: Path, require_final: bool = False, out: TextIO = sys.stderr
) -> dict:
    """Collect the run of `view` (mlops.cluster.state.status, read once) into out_dir; mark it when final.

    Raises BadInput with `require_final` for a run that is not final (nothing downloaded).
    """
    from ..results import collect

    run_id = view["run_id"]
    print(
        f"run {run_id} on cluster {s.cluster.name}: started by pipeline {view['pipeline'] or 'unknown'}; notification "
        f"{state.format_notify(view['notify'])}",
        file=out,
    )
    final = state.finished(view)
    if require_final and not final:
        raise BadInput(
            f"run {run_id} is not final ({rundir.format_counts(view['counts'])}"
            f"{'' if view['submitted'] else '; never submitted'}): nothing downloaded. "
            "Collect it without --require-final for partial results, or wait for its notification"
        )
    if final:  # nothing will notify any more: the token goes before anything is downloaded
        notify.remove_token(session, view["run_dir"])
    trusted, problem = _results_view(view)
    result = collect.collect(session, s, run_id, out_dir, view=trusted, view_problem=problem, out=out)
    for line in state.advice(result["counts"], s):
        print(f"  {line}", file=out)
    if final:
        mark_collected(session, view)
    return result


def collect_run(
    session: Remote,
    s: Settings,
    run_id: str,
    out_dir: Path,
    wait: float = 0,
    require_final: bool = False,
    out: TextIO = sys.stderr,
) -> dict:
    """Collect one run into out_dir (with `wait`, first poll until it is final, bounded in seconds).

    Raises BadInput (exit 2, nothing downloaded) for an unknown run, and with `require_final` for a
    run that is not final yet.
    """
    view = state.wait(session, s, run_id, wait, out=out) if wait else state.status(session, s, run_id)
    return collect_view(session, s, view, out_dir, require_final=require_final, out=out)


def collect_all_final(session: Remote, s: Settings, out_dir: Path, out: TextIO = sys.stderr) -> list[str]:
    """Collect every final, not yet collected run of this project on the selected cluster into
    out_dir/<cluster>/<run id>/ (mlops.results.collect); returns their ids, also listed in
    out_dir/<cluster>/collected.txt. Raises WorkFailed when one could not be collected (the others
    are collected all the same)."""
    from ..results import collect, outdir

    collected, failed = [], []
    for name, done in reader.list_runs(session, f"{s.cluster_root}/runs"):
        if not runid.valid(name):
            print(f"  skipping {name[:60]!r}: not a run id", file=out)
            continue
        if done:
            continue  # collected before: its state is not even read
        try:
            view = state.status(session, s, name)
        except MlopsError as exc:
            print(f"  skipping {name}: {exc}", file=out)
            continue
        if not state.finished(view):
            continue
        print(f"collecting run {name} ({rundir.format_counts(view['counts'])})", file=out)
        try:
            collect_view(session, s, view, out_dir, require_final=True, out=out)
            collected.append(name)
        except MlopsError as exc:
            print(f"  run {name}: {exc}", file=out)
            failed.append(name)
    print(f"collected {len(collected)} final run(s): {', '.join(collected) or 'none waiting'}", file=out)
    cluster_fd = collect.open_output(out_dir, s)  # never through a link; exists even when nothing was waiting
    try:
        outdir.write_file(cluster_fd, "collected.txt", "".join(f"{name}\n" for name in collected).encode())
    finally:
        os.close(cluster_fd)
    if failed:
        raise WorkFailed(f"{len(failed)} final run(s) could not be collected: {', '.join(failed)}")
    return collected
