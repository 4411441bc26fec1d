"""Which runs to collect, and the "collected" marker (issue 12).

  one run (manual collect, or the pipeline a run's notification started): collect it; with
      `require_final` (the triggered pipeline) a run that is not final is refused before any download;
  every run (a scheduled pipeline): each run of this project on the cluster that is final and has no
      state/collected.json yet, one after another.
A final run that was collected gets state/collected.json (when, by which pipeline) and loses its
trigger token; so a second scheduled pipeline collects nothing. The download and the reports are
mlops.results' (one function for one run).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import runid
from ..errors import BadInput, MlopsError, WorkFailed
from ..remote import Remote
from . import notify, state

if TYPE_CHECKING:
    from ..settings import Settings


def mark_collected(session: Remote, view: dict, env: Mapping[str, str] = os.environ) -> None:
    """state/collected.json + the trigger token removed; only for a final run."""
    record = {"at": time.time(), "pipeline": env.get("CI_PIPELINE_ID"), "job": env.get("CI_JOB_ID")}
    session.write_file(f"{view['run_dir']}/state/collected.json", json.dumps(record).encode(), 0o600)
    notify.remove_token(session, view["run_dir"])


def collect_run(
    session: Remote,
    cfg: Settings,
    run_id: str,
    out_dir: Path,
    wait: float = 0,
    require_final: bool = False,
    out: TextIO = sys.stderr,
) -> dict:
    """Collect one run into out_dir (mlops.results.collect.collect); mark it when it is final.

    Raises BadInput (exit 2, nothing downloaded) for a malformed or unknown run id, and with
    `require_final` for a run that is not final yet.
    """
    from ..results import collect

    view = state.wait(session, cfg, run_id, wait, out=out) if wait else state.status(session, cfg, run_id)
    print(
        f"run {run_id}: started by pipeline {view['pipeline'] or 'unknown'}; notification "
        f"{state.format_notify(view['notify'])}",
        file=out,
    )
    final = state.finished(view)
    if require_final and not final:
        raise BadInput(
            f"run {run_id} is not final ({state.format_counts(view['counts'])}"
            f"{'' if view['submitted'] else '; never submitted'}): nothing downloaded. "
            "Collect it by hand for partial results, or wait for its notification"
        )
    if final:  # nothing will notify any more: the token goes before anything is downloaded
        notify.remove_token(session, view["run_dir"])
    result = collect.collect(session, cfg, run_id, out_dir, out=out)
    if final:
        mark_collected(session, view)
    return result


def collect_all_final(session: Remote, cfg: Settings, out_dir: Path, out: TextIO = sys.stderr) -> list[str]:
    """Collect every final, not yet collected run of this project into out_dir/<run id>/; returns their ids."""
    root = cfg.cluster_root
    listing = state.read_remote(session, f"{root}/runs", mode="list").get("runs", [])
    collected, failed = [], []
    for name in listing if isinstance(listing, list) else []:
        if not runid.valid(name):
            print(f"  skipping {str(name)[:60]!r}: not a run id", file=out)
            continue
        try:
            view = state.status(session, cfg, name)
        except MlopsError as exc:
            print(f"  skipping {name}: {exc}", file=out)
            continue
        if view["collected"] or not state.finished(view):
            continue
        print(f"collecting run {name} ({state.format_counts(view['counts'])})", file=out)
        try:
            collect_run(session, cfg, name, Path(out_dir) / name, require_final=True, out=out)
            collected.append(name)
        except MlopsError as exc:
            print(f"  run {name}: {exc}", file=out)
            failed.append(name)
    print(f"collected {len(collected)} final run(s): {', '.join(collected) or 'none waiting'}", file=out)
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # the job's artifact exists even when nothing was waiting
    (Path(out_dir) / "collected.txt").write_text("".join(f"{name}\n" for name in collected))
    if failed:
        raise WorkFailed(f"{len(failed)} final run(s) could not be collected: {', '.join(failed)}")
    return collected
