"""`mlops submit` and `mlops cancel`: start one attempt of a run, recorded so that any retry is safe.

The order is the research design's: params writes one env file per configuration, data writes the
data set, then one model task per env file.
  scheduler = slurm: params -> data (afterok) -> model arrays (afterok; chunks of MaxArraySize run one
                     after another, afterany, throttled by %K = scheduler.parallel) -> notify (afterany)
  scheduler = none:  the same order on the login host (mlops.cluster.host)
Retry safety (issue 14): state/jobs.json is replaced atomically BEFORE sbatch with the attempt marked
"submitting" and AFTER it marked "submitted" with the job ids; shell/submit_slurm.sh appends each id
to state/jobs/submitted-N.txt the moment it has it. A retried `mlops submit` therefore finds either
no submission (it submits), a cut one (it cancels what the progress file lists and submits again), or
a whole one (nothing to do, and it says so). Success is never reported for a run that did not start.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, TextIO

from .. import params, rundir, runid, stages
from ..errors import BadInput, WorkFailed
from ..images import deployed, runtime
from ..remote import Remote
from . import host, notify, prepare, reader, records, sbatch, slurm, state

if TYPE_CHECKING:
    from ..settings import Settings


def _write_jobs(session: Remote, path: str, attempts: list[dict]) -> None:
    session.write_file(f"{path}/state/jobs.json", json.dumps(attempts, indent=1).encode(), 0o600)


def cancel_jobs(session: Remote, s: Settings, run_id: str, attempt: int, ids: list[str]) -> list[str]:
    """Cancel the jobs of one attempt: `ids` (validated) and, by name, any whose id never came back
    (shell/cancel_slurm.sh on stdin). Returns the ids SLURM still lists afterwards; raises WorkFailed
    when SLURM could not be asked."""
    script = resources.files(__package__).joinpath("shell/cancel_slurm.sh").read_bytes()
    prefix = sbatch.job_name(s.project.slug, run_id, attempt, "")[:-1]
    rc, left, err = session.run(shlex.join(["bash", "-s", "--", prefix, *ids]), stdin=script, check=False)
    still = [line.strip() for line in left.splitlines() if re.fullmatch(r"[0-9]{1,18}(_[0-9]{1,9})?", line.strip())]
    if rc not in (0, 3) or (rc == 3 and not still):
        raise WorkFailed(f"run {run_id}: cannot tell whether its jobs are cancelled ({err.strip()[-300:]})")
    return still


def cancel_attempt(session: Remote, s: Settings, path: str, run_id: str, progress: dict, attempt: dict) -> None:
    """Cancel whatever a cut submission of `attempt` got from SLURM (the ids its progress file lists,
    and by name a job whose id never came back) or the runner it started. Raises WorkFailed when SLURM
    still lists a job of it afterwards: submitting again would run it twice."""
    if attempt["kind"] == "none":
        host.stop_all(session, path)
        return
    named, model, _ = progress.get(attempt["attempt"], ({}, [], False))
    still = cancel_jobs(session, s, run_id, attempt["attempt"], [*named.values(), *model])
    if still:
        raise WorkFailed(
            f"run {run_id}: attempt {attempt['attempt']} was cut during submission and SLURM still lists its "
            f"job(s) {', '.join(still)} after scancel; not submitting again (that would run them twice). "
            "Retry when they are gone"
        )


def submit(
    session: Remote,
    cfg: Settings,
    manifest: dict,
    run_id: str,
    failed_only: bool = False,
    out: TextIO = sys.stderr,
    env: Mapping[str, str] = os.environ,
) -> dict:
    """Start (or safely resume) a run; returns the attempt record that now stands.

    Raises BadInput for bad setup (before anything is created), WorkFailed when the scheduler refuses
    (the record stays "submitting", so the next `mlops submit` cancels the rest and submits again).
    """
    kind = cfg.scheduler.kind
    if kind not in ("slurm", "none"):
        raise BadInput(f"mlops.toml clusters.{cfg.cluster.name}.scheduler: {kind!r} is not slurm or none")
    trigger, no_trigger = notify.trigger(cfg, env)
    images = prepare.images_on_cluster(cfg, manifest)
    path = runid.run_dir(cfg.cluster_root, run_id)
    jobs = f"{path}/state/jobs"
    commit = env.get("CI_COMMIT_SHA") or rundir.git_commit(cfg.root)
    images = deployed(session, images)  # each in the form deploy made it (BadInput: not deployed)
    remote, problems = records.clean(reader.read_run(session, path))
    for line in problems:
        print(f"  warning: run {run_id}: {line}", file=out)
    done = [a for a in remote["attempts"] if a["status"] == records.SUBMITTED]
    for a in (a for a in remote["attempts"] if a["status"] == records.SUBMITTING):
        print(
            f"run {run_id}: attempt {a['attempt']} was cut during submission; cancelling what it started "
            "and submitting it again",
            file=out,
        )
        cancel_attempt(session, cfg, path, run_id, remote["progress"], a)
    if remote["exists"] and remote["commit"] and remote["commit"] != commit and not failed_only:
        raise BadInput(
            f"run {run_id} on the cluster belongs to commit {remote['commit'][:12]}, not {commit[:12]}: "
            "a run id is used by one commit (pass another --run-id)"
        )
    if done and not failed_only:
        print(
            f"run {run_id}: already submitted (attempt {done[-1]['attempt']}); nothing to do "
            "(`mlops status` shows it, `mlops submit --failed-only` reruns what failed)",
            file=out,
        )
        return done[-1]

    config_ids = [c.config_id for c in params.expand(params.validate(cfg.root / "params" / "parameters.json"))]
    if done:  # --failed-only on a submitted run
        todo = _failed(session, cfg, run_id, out)
        if not todo:
            return done[-1]
        attempt, with_stages = max(a["attempt"] for a in remote["attempts"]) + 1, False
    else:  # nothing submitted yet (new run, or a retry after a cut or refused submission)
        if failed_only and remote["exists"]:
            print(f"run {run_id}: never submitted; submitting the whole run", file=out)
        elif failed_only:
            raise BadInput(f"run {run_id} does not exist on the cluster; `mlops submit` starts it")
        todo, attempt, with_stages = list(range(len(config_ids))), 1, True
        prepare.prepare(session, cfg, path, run_id, manifest, images, commit, len(config_ids))
    model_argv = runtime.run_argv(
        images["model"],
        path,
        "@ENV_FILE@",
        gpu=cfg.cluster.use_gpu,
        entrypoint=stages.raw_entrypoint(cfg.root, "model"),
    )
    session.write_file(f"{jobs}/model-{attempt}.argv", prepare.argv_lines(model_argv).encode(), 0o600)
    prepare.write_shell_files(session, path)
    session.run(f"rm -f {shlex.quote(path)}/state/notify.json {shlex.quote(path)}/state/collected.json", check=False)
    if trigger:
        notify.install_token(session, path, env)
    else:
        print(f"run {run_id}: no notification when it ends ({no_trigger}); collect by hand or by schedule", file=out)
        session.write_file(
            f"{path}/state/notify.json",
            json.dumps({"status": "skipped", "http_status": 0, "error": no_trigger, "at": time.time()}).encode(),
            0o600,
        )
    record = {"attempt": attempt, "kind": kind, "status": records.SUBMITTING, "indices": todo, "submitted": time.time()}
    if attempt == 1:
        record["config_ids"] = config_ids
    attempts = [*done, record]
    _write_jobs(session, path, attempts)  # before anything is started: a cut is seen
    notify_argv = trigger.argv() if trigger else None
    if kind == "slurm":
        _submit_slurm(session, cfg, path, run_id, record, with_stages, notify_argv, out)
    else:
        session.write_file(f"{jobs}/indices-{attempt}.txt", "".join(f"{i}\n" for i in todo).encode(), 0o600)
        if notify_argv:
            session.write_file(f"{jobs}/notify.args", prepare.argv_lines(notify_argv).encode(), 0o600)
        record["pid"] = host.start(session, path, attempt, cfg.scheduler.parallel, with_stages)
        record["model"] = [{"job": None, "offset": 0, "indices": todo}]
        print(f"run {run_id}: started on the login host (pid {record['pid']}, "
              f"{cfg.scheduler.parallel} at a time)", file=out)  # fmt: skip
    record["status"] = records.SUBMITTED
    _write_jobs(session, path, attempts)
    if attempt == 1:
        runid.remember(cfg.root, cfg.cluster.name, run_id)
    return record


def _failed(session: Remote, s: Settings, run_id: str, out: TextIO) -> list[int]:
    """The indices `--failed-only` reruns (every configuration that did not complete)."""
    view = state.status(session, s, run_id)
    if not view["configs"]:
        raise WorkFailed(
            f"run {run_id}: no configuration is known (params never wrote envs/ids.txt); "
            "see `mlops status`, then submit a new run"
        )
    unfinished = [c for c in view["configs"].values() if not slurm.is_final(c["status"])]
    if unfinished:
        raise BadInput(
            f"run {run_id} still has {len(unfinished)} pending/requeued/running configurations: "
            "wait for them (mlops status) or `mlops cancel` first"
        )
    todo = sorted(c["index"] for c in view["configs"].values() if c["status"] != "completed")
    if not todo:
        print(f"run {run_id}: all {len(view['configs'])} configurations completed; nothing to rerun", file=out)
    return todo


def _submit_slurm(
    session: Remote,
    s: Settings,
    path: str,
    run_id: str,
    record: dict,
    with_stages: bool,
    notify_argv: list[str] | None,
    out: TextIO,
) -> None:
    jobs = f"{path}/state/jobs"
    _, show, _ = session.run("scontrol show config", check=False)
    max_array = slurm.parse_max_array_size(show)
    files, chunks = sbatch.batch_scripts(
        s, path, run_id, record["indices"], max_array, record["attempt"], with_stages, notify_argv
    )
    for name, text in files.items():
        session.write_file(f"{jobs}/{name}", text.encode(), 0o600)
    prefix = sbatch.job_name(s.project.slug, run_id, record["attempt"], "")[:-1]
    argv = [f"{jobs}/submit_slurm.sh", jobs, str(record["attempt"]), str(int(with_stages)), str(len(chunks))]
    rc, stdout, err = session.run(["bash", *argv, str(int(notify_argv is not None)), prefix], check=False)
    said = "; ".join(err.strip().splitlines())[-1500:]
    if rc == 1:
        raise WorkFailed(
            f"run {run_id}: sbatch refused the jobs ({said}); nothing of this attempt is left in the queue. "
            "Retry the job (or `mlops submit` again): the run is submitted afresh."
        )
    if rc != 0:  # 3: jobs of this attempt may be queued; a retry first cancels them (or refuses)
        raise WorkFailed(
            f"run {run_id}: the submission failed (exit {rc}: {said}) and jobs of this attempt may still be "
            "queued: see `mlops status`. A retry of the job cancels them before it submits again, and "
            "stops if it cannot."
        )
    named, model, _ = slurm.parse_submitted(stdout.splitlines())
    if len(model) != len(chunks) or (with_stages and not {"params", "data"} <= set(named)):
        raise WorkFailed(
            f"run {run_id}: the submission answered {stdout.strip()[-500:]!r}; the jobs it lists in "
            "state/jobs/submitted-N.txt are cancelled by the next `mlops submit` before it submits again"
        )
    record.update(
        {k: named[k] for k in ("params", "data", "notify") if k in named},
        max_array_size=max_array,
        model=[{"job": j, **c} for j, c in zip(model, chunks)],
    )
    print(
        f"run {run_id}: submitted "
        + ", ".join(
            [f"{k} job {record[k]}" for k in ("params", "data") if k in record]
            + [f"model array {m['job']} ({len(m['indices'])} tasks, %{s.scheduler.parallel})" for m in record["model"]]
            + ([f"notify job {record['notify']} (afterany)"] if "notify" in record else [])
        ),
        file=out,
    )


def cancel(session: Remote, cfg: Settings, run_id: str, out: TextIO = sys.stderr) -> int:
    """Cancel the cluster jobs of a run (all attempts, cut ones too); returns how many were known."""
    view = state.status(session, cfg, run_id)
    n, left = 0, []
    for a in view["all_attempts"]:
        if a["kind"] == "slurm":
            named, model, _ = view["progress"].get(a["attempt"], ({}, [], False))
            ids = list(dict.fromkeys([*state.job_ids([{**a, "kind": "slurm"}]), *named.values(), *model]))
            left += cancel_jobs(session, cfg, run_id, a["attempt"], ids)
            n += len(ids)
        elif a.get("pid"):
            host.stop(session, a["pid"])
            n += 1
    print(f"run {run_id}: cancel sent to {n} job(s)", file=out)
    if left:
        print(f"  SLURM still lists {', '.join(left)} (they may be ending): see `mlops status`", file=out)
    return n
