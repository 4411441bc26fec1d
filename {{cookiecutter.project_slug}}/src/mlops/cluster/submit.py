"""`mlops submit` and `mlops cancel`: start one attempt of a run, recorded so that any retry is safe.

The order is the research design's: params writes one env file per configuration, data writes the
data set, then one model task per env file.
  scheduler = slurm: params -> data (afterok) -> model arrays (afterok; chunks of MaxArraySize run one
                     after another, afterany, throttled by %K = the cluster's `parallel`) -> notify (afterany)
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
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .. import params, rundir, runenv, runid, stages
from ..errors import BadInput, WorkFailed
from ..images import runtime
from ..remote import Remote
from . import host, notify, slurm, state

if TYPE_CHECKING:
    from ..settings import Settings

SHELL_FILES = ("task.sh", "stage.sh", "runner.sh", "submit_slurm.sh", "notify.sh")


def argv_lines(argv: list[str]) -> str:
    """A container argv as the shell files read it: one word per line, placeholders for what the
    shell knows (@ENV_FILE@, @UID@, @GID@). Raises ValueError for a newline in a word."""
    words = []
    for word in argv:
        if isinstance(word, runtime.Raw):
            if word != "$(id -u):$(id -g)":
                raise ValueError(f"unexpected shell word {word!r} in a container argv")
            word = "@UID@:@GID@"
        if "\n" in word or "\r" in word:
            raise ValueError("a container argv word contains a newline")
        words.append(word)
    return "\n".join(words) + "\n"


def images_on_cluster(s: Settings, manifest: dict) -> dict[str, runtime.Image]:
    """The deployed images of the manifest (BadInput when one is missing from it)."""
    found = manifest.get("images", {})
    missing = [st.name for st in stages.STAGES if st.name not in found]
    if missing:
        raise BadInput(f"images manifest lacks {', '.join(missing)}: run `mlops build` then `mlops deploy`")
    store = f"{s.cluster_root}/images"
    return {
        st.name: runtime.Image(st.name, found[st.name]["digest"], store, s.project.slug, s.cluster.runtime)
        for st in stages.STAGES
    }


def _stage_env(s, run_id: str, manifest: dict, commit: str) -> bytes:
    """The env file of the params and data stages: the run context (mlops.runenv; never a secret)."""
    tags = [f"commit={commit[:12]}"] + [f"{n}@{img['digest'][:19]}" for n, img in sorted(manifest["images"].items())]
    return runenv.env_file_text(runenv.stage_env(s, run_id, runtime.MOUNT, tags)).encode()


def _write_jobs(session, path: str, attempts: list[dict]) -> None:
    session.write_file(f"{path}/state/jobs.json", json.dumps(attempts, indent=1).encode(), 0o600)


def _cancel_partial(session, path: str, progress: dict, attempt: dict) -> None:
    """Cancel whatever a cut submission of `attempt` got from SLURM (or the runner it started)."""
    named, model, _ = progress.get(attempt["attempt"], ({}, [], False))
    ids = [*named.values(), *model]
    if ids:
        session.run(["scancel", *ids], check=False)
    if attempt["kind"] == "none":
        host.stop_all(session, path)


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
    opts = slurm.SlurmOptions.from_settings(cfg)
    trigger, no_trigger = notify.trigger(cfg, env)
    images = images_on_cluster(cfg, manifest)
    path = runid.run_dir(cfg.cluster_root, run_id)
    jobs = f"{path}/state/jobs"
    commit = env.get("CI_COMMIT_SHA") or rundir.git_commit(cfg.root)
    checks = " && ".join(
        f"{{ {runtime.converted_test(img)} || {{ echo {shlex.quote(n)}; false; }}; }}" for n, img in images.items()
    )
    rc, missing, _ = session.run(checks, check=False)
    if rc != 0:
        raise BadInput(
            f"image {missing.strip()} (digest {images[missing.strip()].digest[:19]}) is not on the "
            "cluster: run `mlops deploy` for this commit first"
        )
    remote, problems = state.clean(state.read_remote(session, path))
    for line in problems:
        print(f"  warning: run {run_id}: {line}", file=out)
    done = [a for a in remote["attempts"] if a["status"] == state.SUBMITTED]
    cut = [a for a in remote["attempts"] if a["status"] == state.SUBMITTING]
    for a in cut:
        print(
            f"run {run_id}: attempt {a['attempt']} was cut during submission; cancelling what it started "
            "and submitting it again",
            file=out,
        )
        _cancel_partial(session, path, remote["progress"], a)
    if remote["exists"] and remote["commit"] and remote["commit"] != commit and not failed_only:
        raise BadInput(
            f"run {run_id} on the cluster belongs to commit {remote['commit'][:12]}, not {commit[:12]}: "
            "a run id is used by one commit (pass another --run-id)"
        )
    if done and not failed_only:
        first = done[-1]
        print(
            f"run {run_id}: already submitted (attempt {first['attempt']}); nothing to do "
            "(`mlops status` shows it, `mlops submit --failed-only` reruns what failed)",
            file=out,
        )
        return first

    doc = params.validate(cfg.root / "params" / "parameters.json")
    config_ids = [c.config_id for c in params.expand(doc)]
    if done:  # --failed-only on a submitted run
        view = state.status(session, cfg, run_id)
        if not view["configs"]:
            raise WorkFailed(
                f"run {run_id}: no configuration is known (params never wrote envs/index.json); "
                "see `mlops status`, then submit a new run"
            )
        unfinished = [c for c in view["configs"].values() if c["status"] in ("pending", "running")]
        if unfinished:
            raise BadInput(
                f"run {run_id} still has {len(unfinished)} pending/running configurations: "
                "wait for them (mlops status) or `mlops cancel` first"
            )
        todo = sorted(c["index"] for c in view["configs"].values() if c["status"] != "completed")
        if not todo:
            print(f"run {run_id}: all {len(view['configs'])} configurations completed; nothing to rerun", file=out)
            return done[-1]
        attempt, with_stages = max(a["attempt"] for a in remote["attempts"]) + 1, False
    else:  # nothing submitted yet (new run, or a retry after a cut or refused submission)
        if failed_only and remote["exists"]:
            print(f"run {run_id}: never submitted; submitting the whole run", file=out)
        elif failed_only:
            raise BadInput(f"run {run_id} does not exist on the cluster; `mlops submit` starts it")
        todo, attempt, with_stages = list(range(len(config_ids))), 1, True
        _prepare(session, cfg, path, run_id, manifest, images, commit, len(config_ids))
    argv = {
        name: runtime.run_argv(
            img, path, "@ENV_FILE@", gpu=opts.gpu and name == "model", entrypoint=stages.raw_entrypoint(cfg.root, name)
        )
        for name, img in images.items()
    }
    session.write_file(f"{jobs}/model-{attempt}.argv", argv_lines(argv["model"]).encode(), 0o600)
    for name in SHELL_FILES:
        session.write_file(f"{jobs}/{name}", resources.files(__package__).joinpath(f"shell/{name}").read_bytes(), 0o700)
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
    record = {"attempt": attempt, "kind": kind, "status": state.SUBMITTING, "indices": todo, "submitted": time.time()}
    if attempt == 1:
        record["config_ids"] = config_ids
    attempts = [a for a in remote["attempts"] if a["status"] == state.SUBMITTED]
    _write_jobs(session, path, attempts + [record])  # before anything is started: a cut is seen
    notify_argv = trigger.argv(run_id) if trigger else None
    if kind == "slurm":
        _submit_slurm(session, cfg, opts, path, record, with_stages, notify_argv, run_id, out)
    else:
        session.write_file(f"{jobs}/indices-{attempt}.txt", "".join(f"{i}\n" for i in todo).encode(), 0o600)
        if notify_argv:
            session.write_file(f"{jobs}/notify.args", argv_lines(notify_argv).encode(), 0o600)
        record["pid"] = host.start(session, path, attempt, opts.parallel, with_stages)
        record["model"] = [{"job": None, "offset": 0, "indices": todo}]
        print(f"run {run_id}: started on the login host (pid {record['pid']}, {opts.parallel} at a time)", file=out)
    record["status"] = state.SUBMITTED
    _write_jobs(session, path, attempts + [record])
    if attempt == 1:
        runid.remember(cfg.root, cfg.cluster.name, run_id)
    return record


def _prepare(session, cfg, path: str, run_id: str, manifest: dict, images: dict, commit: str, n: int) -> None:
    """Create the run directory (or complete one a cut submission left) with run.json and stage files."""
    q = shlex.quote
    session.run(
        f"mkdir -p {q(os.path.dirname(path))} && {{ [ -d {q(path)} ] || mkdir -m 700 {q(path)}; }} && "
        f"cd {q(path)} && mkdir -m 700 -p state/tasks state/jobs state/slurm results"
    )
    with tempfile.TemporaryDirectory() as tmp:
        local = rundir.create(Path(tmp), run_id, {
            "mode": cfg.scheduler.kind, "commit": commit,
            "pipeline": os.environ.get("CI_PIPELINE_ID"), "pipeline_url": os.environ.get("CI_PIPELINE_URL"),
            "images": {name: img["digest"] for name, img in manifest["images"].items()},
            "runtime": images["model"].runtime,
            "parameters_sha256": params.file_sha256(cfg.root / "params" / "parameters.json"),
            "configurations": n})  # fmt: skip
        session.write_file(f"{path}/run.json", (local / "run.json").read_bytes(), 0o600)
    session.write_file(f"{path}/state/stage.env", _stage_env(cfg, run_id, manifest, commit), 0o600)
    for name in ("params", "data"):
        argv = runtime.run_argv(images[name], path, "@ENV_FILE@", entrypoint=stages.raw_entrypoint(cfg.root, name))
        session.write_file(f"{path}/state/jobs/{name}.argv", argv_lines(argv).encode(), 0o600)


def _submit_slurm(session, cfg, opts, path: str, record: dict, with_stages: bool, notify_argv, run_id, out) -> None:
    jobs = f"{path}/state/jobs"
    _, show, _ = session.run("scontrol show config", check=False)
    max_array = slurm.parse_max_array_size(show)
    files, chunks = slurm.batch_scripts(
        path, cfg.project.slug, opts, record["indices"], max_array, record["attempt"], with_stages, notify_argv
    )
    for name, text in files.items():
        session.write_file(f"{jobs}/{name}", text.encode(), 0o600)
    rc, stdout, err = session.run(
        [
            "bash",
            f"{jobs}/submit_slurm.sh",
            jobs,
            str(record["attempt"]),
            "1" if with_stages else "0",
            str(len(chunks)),
            "1" if notify_argv else "0",
        ],
        check=False,
    )
    if rc != 0:
        said = "; ".join(err.strip().splitlines())[-1500:]
        raise WorkFailed(
            f"run {run_id}: sbatch refused the jobs ({said}); what was submitted is cancelled. "
            "Retry the job (or `mlops submit` again): the run is submitted afresh."
        )
    named, model, _ = slurm.parse_submitted(stdout.splitlines())
    if len(model) != len(chunks) or (with_stages and not {"params", "data"} <= set(named)):
        raise WorkFailed(f"run {run_id}: the submission answered {stdout.strip()[-500:]!r}; retry the job")
    record.update(
        {k: named[k] for k in ("params", "data", "notify") if k in named},
        max_array_size=max_array,
        model=[{"job": j, **c} for j, c in zip(model, chunks)],
    )
    print(
        f"run {run_id}: submitted "
        + ", ".join(
            [f"{k} job {record[k]}" for k in ("params", "data") if k in record]
            + [f"model array {m['job']} ({len(m['indices'])} tasks, %{opts.parallel})" for m in record["model"]]
            + ([f"notify job {record['notify']} (afterany)"] if "notify" in record else [])
        ),
        file=out,
    )


def cancel(session: Remote, cfg: Settings, run_id: str, out: TextIO = sys.stderr) -> int:
    """Cancel the cluster jobs of a run (all attempts, cut ones too); returns how many were signalled."""
    view = state.status(session, cfg, run_id)
    n = 0
    for a in view["all_attempts"]:
        if a["kind"] == "slurm":
            named, model, _ = view["progress"].get(a["attempt"], ({}, [], False))
            ids = list(dict.fromkeys([*state.job_ids([{**a, "kind": "slurm"}]), *named.values(), *model]))
            if ids:
                session.run(["scancel", *ids], check=False)
            n += len(ids)
        elif a.get("pid"):
            host.stop(session, a["pid"])
            n += 1
    print(f"run {run_id}: cancel sent to {n} job(s)", file=out)
    return n
