"""The cluster verbs, each over ONE login: what `mlops deploy|submit|launch|status|collect|cancel` and
`mlops images prune` do (mlops.commands.cluster maps the command line onto these).

Each takes the Settings with one cluster selected (`--cluster NAME`), checks its local input first
(the images manifest, the run id) so that bad input stops it before the login, then opens one
mlops.ssh Session and calls the room that does the work (images: deploy and prune; cluster: submit,
state, runs; results: collect). Failure is an MlopsError: BadInput before any work, WorkFailed when the
work ran and part of it failed (a configuration, a download). Output goes to stdout; the rooms' progress
lines to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import images, rundir, runid, stages
from ..errors import WorkFailed
from ..results import collect as collect_mod
from . import runs, state
from . import submit as submit_mod

if TYPE_CHECKING:
    from ..settings import Settings
    from ..ssh.session import Session

DEPLOY_REPORT = Path("deploy/report.json")  # what deploy uploaded: the run job's manifest in CI


def _session(s: Settings) -> Session:
    from ..ssh.session import Session

    return Session.from_settings(s)


def _manifest(path: Path) -> dict:
    """The images manifest, checked before any login (BadInput names the field)."""
    manifest = images.read_manifest(path)
    stages.check_manifest(manifest, str(path))
    return manifest


def deploy(s: Settings, manifest_path: Path, report: Path | None = DEPLOY_REPORT) -> None:
    """Upload and convert this commit's images on the selected cluster; write what was uploaded to `report`."""
    _manifest(manifest_path)
    local = images.local_images(s, manifest_path)  # the build's layout checked before the login
    with _session(s) as session:
        result = images.deploy(session, s, manifest_path, images=local)
    if report:
        images.write_report(result, report)


def submit(
    s: Settings, manifest_path: Path, run_id: str | None = None, failed_only: bool = False, wait: float = 0
) -> None:
    """Start (or with failed_only, complete) a run; in CI the run job uses the deploy job's report
    (the digests really deployed) when the build's manifest is not there."""
    if not manifest_path.is_file() and DEPLOY_REPORT.is_file():
        manifest_path = DEPLOY_REPORT
    manifest = _manifest(manifest_path)
    chosen = _run_id(s, run_id, failed_only)
    with _session(s) as session:
        _submit_over(session, s, manifest, chosen, failed_only, wait)


def launch(
    s: Settings,
    manifest_path: Path,
    report: Path = DEPLOY_REPORT,
    run_id: str | None = None,
    failed_only: bool = False,
    wait: float = 0,
) -> None:
    """deploy + submit over ONE login (one click, one one-time code: the CI job of the click)."""
    manifest = _manifest(manifest_path)
    local = images.local_images(s, manifest_path)  # the build's layout checked before the login
    chosen = _run_id(s, run_id, failed_only)
    with _session(s) as session:  # logged in first: a typed one-time code is used before any slow work
        images.write_report(images.deploy(session, s, manifest_path, images=local), report)
        _submit_over(session, s, manifest, chosen, failed_only, wait)


def _run_id(s: Settings, explicit: str | None, failed_only: bool) -> str:
    """A new run: --run-id, else the pipeline's, else a fresh laptop-<time> one; --failed-only: an existing run."""
    if failed_only:
        return runid.resolve(explicit, s.root, s.cluster.name)
    if explicit:
        return runid.check(explicit, "--run-id")
    return runid.from_ci() or runid.new("laptop")


def _submit_over(session: Session, s: Settings, manifest: dict, run_id: str, failed_only: bool, wait: float) -> None:
    """Submit (and with `wait`, follow) a run over an open session; SIGTERM while waiting cancels the cluster jobs."""
    if wait:  # cancelling the CI job (SIGTERM) cancels the cluster jobs too
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        record = submit_mod.submit(session, s, manifest, run_id, failed_only=failed_only)
        Path("state").mkdir(exist_ok=True)  # the job ids, as the job's artifact (state/)
        Path("state", f"submit-{run_id}-{record['attempt']}.json").write_text(json.dumps(record, indent=1) + "\n")
        if not wait:
            return
        view = state.wait(session, s, run_id, wait)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cancel finish
        submit_mod.cancel(session, s, run_id)
        raise WorkFailed(f"run {run_id}: stopped while waiting; its cluster jobs were cancelled") from None
    counts = rundir.format_counts(view["counts"])
    print(f"run {run_id}: {counts}")
    if view["counts"]["completed"] != len(view["configs"]):
        raise WorkFailed(f"run {run_id}: not every configuration completed ({counts})")


def status(
    s: Settings, run_id: str | None = None, wait: float = 0, as_json: bool = False, out: TextIO = sys.stdout
) -> None:
    """Print the state of each configuration of a run (with `wait`: once every one is final)."""
    chosen = runid.resolve(run_id, s.root, s.cluster.name)
    with _session(s) as session:
        view = state.wait(session, s, chosen, wait) if wait else state.status(session, s, chosen)
    if as_json:
        hidden = ("attempts", "all_attempts", "progress")
        print(json.dumps({k: v for k, v in view.items() if k not in hidden}, indent=1, sort_keys=True), file=out)
        return
    for line in _status_lines(s, chosen, view):
        print(line, file=out)


def _status_lines(s: Settings, run_id: str, view: dict) -> list[str]:
    never = "" if view["submitted"] else " (never submitted: `mlops submit` submits it)"
    where = f"cluster {s.cluster.name}, {view['run_dir']}"
    lines = [f"run {run_id} ({where}): {rundir.format_counts(view['counts'])}{never}"]
    lines += [f"  stage {name:<6} {stage_state}" for name, stage_state in view["stages"].items()]
    lines += [
        f"  {c['index']:>4} {c['config_id']} {c['status']}"
        for c in sorted(view["configs"].values(), key=lambda c: c["index"])
    ]
    lines.append(
        f"  notification: {state.format_notify(view['notify'])}" + ("; collected" if view["collected"] else "")
    )
    lines += [f"  {line}" for line in state.advice(view["counts"], s)]
    lines += [f"  warning: {line}" for line in view["problems"]]
    return lines


def collect(
    s: Settings,
    out_dir: Path,
    run_id: str | None = None,
    wait: float = 0,
    require_final: bool = False,
    all_final: bool = False,
    unattended: bool = False,
) -> None:
    """Download a run's results into out_dir/<cluster>/<run id>/ (or every final, uncollected run with all_final).

    unattended: a triggered or scheduled pipeline, where nobody can type a code: a cluster whose login
    needs one is skipped with one line (no error). Raises WorkFailed when results are missing or failed.
    """
    why = runs.unattended_skip(s) if unattended else None
    if why:
        print(f"mlops collect: skipped (--unattended): {why}")
        return
    os.close(collect_mod.open_output(out_dir, s))  # a link in --out's path is refused before the login
    if all_final:
        with _session(s) as session:
            runs.collect_all_final(session, s, out_dir)
        return
    chosen = runid.resolve(run_id, s.root, s.cluster.name)
    with _session(s) as session:
        result = runs.collect_run(session, s, chosen, out_dir, wait=wait, require_final=require_final)
    if not result["ok"]:
        raise WorkFailed(f"run {chosen}: not every configuration completed and came back (the table above says which)")


def cancel(s: Settings, run_id: str | None = None) -> None:
    """Cancel whatever of a run is still queued or running on the selected cluster."""
    chosen = runid.resolve(run_id, s.root, s.cluster.name)
    with _session(s) as session:
        submit_mod.cancel(session, s, chosen)


def prune(s: Settings, keep: int | None = None) -> None:
    """Remove the image blobs that neither the last `keep` commits nor a queued or running run use."""
    with _session(s) as session:
        images.prune(session, s, keep)
