"""Run the sweep on the cluster: `mlops submit`, `mlops status`, `mlops cancel`.

The order is the research design's: the params container writes one env file per configuration,
then the data container writes the data set, then one model container per env file.
  scheduler = slurm: three dependent batch jobs (afterok); the model stage is ONE job array
                     throttled by %K (mlops.toml scheduler.parallel), split into several arrays when
                     it is larger than the cluster's MaxArraySize (read from `scontrol show config`).
  scheduler = none:  the same order on the login host, in the background, K at a time.
The batch scripts are built here from data (as submitit does) and sent over the session: the
cluster needs no mlops install: compute nodes only bash, sed and awk (the login node also python3).
Each model task runs state/jobs/task-<attempt>.sh, which writes state/tasks/<config-id>.json itself,
the same record `mlops run --local` writes (mlops.rundir), so collect reads both the same way.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import params, rundir, runtime, stages
from .runtime import Raw, shell_join
from .errors import BadInput

TERMINAL = ("completed", "failed", "timeout", "out-of-memory", "cancelled")
# SLURM job states -> mlops.rundir.STATES
SLURM_STATES = {
    "PENDING": "pending", "REQUEUED": "pending", "RESIZING": "pending", "SUSPENDED": "pending",
    "RUNNING": "running", "CONFIGURING": "running", "COMPLETING": "running", "STAGE_OUT": "running",
    "SIGNALING": "running", "COMPLETED": "completed", "FAILED": "failed", "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed", "SPECIAL_EXIT": "failed", "REVOKED": "cancelled", "TIMEOUT": "timeout",
    "DEADLINE": "timeout", "OUT_OF_MEMORY": "out-of-memory", "CANCELLED": "cancelled",
    "PREEMPTED": "cancelled",
}


class SubmitError(BadInput):
    """Bad setup for a submission (exit 2); the message names the fix."""


# ------------------------------------------------------------------ pure helpers (unit-tested)

def slurm_state(raw: str) -> str:
    """'CANCELLED by 1000' / 'OUT_OF_MEMORY' / 'RUNNING+' -> one of mlops.rundir.STATES."""
    word = raw.strip().split()[0].rstrip("+") if raw.strip() else ""
    return SLURM_STATES.get(word, "failed" if word else "pending")


def compress(indices: list[int]) -> str:
    """[0,1,2,5,7,8] -> '0-2,5,7-8' (the --array syntax)."""
    parts, run = [], []
    for i in sorted(set(indices)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def expand_array(spec: str) -> list[int]:
    """'0-2,5,7-9:2%4' -> [0,1,2,5,7,9] (a pending array record of scontrol/sacct)."""
    out = []
    for part in spec.split("%")[0].strip("[]").split(","):
        if not part:
            continue
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return out


def array_chunks(indices: list[int], max_array_size: int) -> list[tuple[int, list[int]]]:
    """Split configuration indices into arrays whose task ids stay below MaxArraySize.

    Returns [(offset, task ids)]: task id t of a chunk runs configuration offset + t.
    """
    if max_array_size < 1:
        raise ValueError("MaxArraySize must be positive")
    chunks: dict[int, list[int]] = {}
    for i in sorted(set(indices)):
        offset = (i // max_array_size) * max_array_size
        chunks.setdefault(offset, []).append(i - offset)
    return sorted(chunks.items())


def parse_max_array_size(show_config: str) -> int:
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", show_config, re.M)
    return int(match.group(1)) if match else 1001   # SLURM's documented default


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""
    account: str = ""
    time: str = "01:00:00"
    cpus_per_task: int = 1
    mem: str = ""
    parallel: int = 4
    gpu: bool = False

    @classmethod
    def from_config(cls, cfg) -> "SlurmOptions":
        s = cfg["scheduler"]
        parallel = int(s.get("parallel", 4))
        if parallel < 1:
            raise SubmitError("mlops.toml scheduler.parallel: must be at least 1 (model tasks at once)")
        return cls(partition=str(s.get("partition", "")), account=str(s.get("account", "")),
                   time=str(s.get("time", "01:00:00")), cpus_per_task=int(s.get("cpus_per_task", 1)),
                   mem=str(s.get("mem", "")), parallel=parallel, gpu=cfg.use_gpu)

    def directives(self, model: bool) -> dict[str, str]:
        d = {"partition": self.partition, "account": self.account, "time": self.time,
             "cpus-per-task": str(self.cpus_per_task), "mem": self.mem}
        if model and self.gpu:
            d["gres"] = "gpu:1"
        return {k: v for k, v in d.items() if v}


def sbatch_script(job_name: str, output: str, directives: dict[str, str], body: str) -> str:
    """A batch script from data: one #SBATCH line per option, then the body (no secret anywhere)."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --output={output}"]
    lines += [f"#SBATCH --{k}={v}" for k, v in directives.items()]
    return "\n".join(lines) + "\n" + body.rstrip() + "\n"


def task_script(run_dir: str, model_argv: list[str], attempt: int) -> str:
    """bash script `task-<attempt>.sh INDEX`: one configuration, its log and its state record."""
    q = shlex.quote
    return f"""#!/bin/bash
# One model task: index -> config id -> env file -> model container -> state/tasks/<id>.json
set -u
RUN={q(run_dir)}
IDX=$1
CID=$(sed -n "$((IDX + 1))p" "$RUN/envs/ids.txt")
[ -n "$CID" ] || exit 3
ENV_FILE="$RUN/envs/$CID.env"
JOB="${{SLURM_ARRAY_JOB_ID:-${{SLURM_JOB_ID:-local}}}}_${{SLURM_ARRAY_TASK_ID:-$IDX}}"
# state STATUS [EXIT_CODE]: the record of mlops.rundir.write_task_state, atomically replaced. Plain
# bash + awk: no interpreter start per task, which a sweep of short tasks would pay many times.
state() {{
  local extra="" secs
  if [ -n "$2" ]; then
    secs=$(awk -v a="$STARTED" -v b="$(date +%s.%N)" 'BEGIN {{ printf "%.3f", b - a }}')
    extra=$(printf ', "duration_s": %s, "exit_code": %d' "$secs" "$2")
  fi
  printf '{{"attempt": {attempt}, "config_id": "%s", "job": "%s", "started": %s, "status": "%s"%s}}' "$CID" "$JOB" "$STARTED" "$1" "$extra" > "$RUN/state/tasks/$CID.json.tmp"
  mv -f "$RUN/state/tasks/$CID.json.tmp" "$RUN/state/tasks/$CID.json"
}}
mkdir -p "$RUN/results/$CID"
STARTED=$(date +%s.%N)
state running ""
trap 'state cancelled 143; exit 143' TERM
{shell_join(model_argv)} > "$RUN/results/$CID/log" 2>&1 &
wait $!
RC=$?
if [ "$RC" -eq 0 ] && [ -f "$RUN/results/$CID/metrics.json" ]; then state completed 0; else state failed "$RC"; fi
exit "$RC"
"""


def stage_script(run_dir: str, argvs: dict[str, list[str]]) -> str:
    """bash script `stage.sh NAME` for params and data: log to state/NAME.log, exit code to state/NAME.rc."""
    cases = "\n".join(f"  {name}) {shell_join(argv)} ;;" for name, argv in argvs.items())
    return f"""#!/bin/bash
set -u
RUN={shlex.quote(run_dir)}
case "$1" in
{cases}
  *) echo "unknown stage $1" >&2; exit 2 ;;
esac > "$RUN/state/$1.log" 2>&1
RC=$?
echo "$RC" > "$RUN/state/$1.rc"
exit "$RC"
"""


def slurm_jobs(run_dir: str, slug: str, opts: SlurmOptions, indices: list[int], max_array_size: int,
               attempt: int, with_stages: bool) -> tuple[dict[str, str], str, list[dict]]:
    """The batch scripts and the submission script for one attempt.

    Returns ({file name: script}, submit shell text printing JSON job ids, [model chunk records]).
    Chunks run one after another (afterany) so that %K bounds the whole sweep, not each chunk.
    """
    jobs_dir = f"{run_dir}/state/jobs"
    out_dir = f"{run_dir}/state/slurm"
    files: dict[str, str] = {}
    submit = ["set -u", "ALL=''",
              "fail() { echo \"sbatch failed: $1\" >&2; [ -n \"$ALL\" ] && scancel $ALL; exit 1; }"]
    if with_stages:
        for stage in ("params", "data"):
            files[f"{stage}.sbatch"] = sbatch_script(f"{slug}-{stage}", f"{out_dir}/{stage}-%j.out",
                                                     opts.directives(model=False),
                                                     f"exec bash {shlex.quote(jobs_dir)}/stage.sh {stage}")
        submit += [f"P=$(sbatch --parsable {shlex.quote(jobs_dir)}/params.sbatch) || fail params; P=${{P%%;*}}; ALL=\"$P\"",
                   f"D=$(sbatch --parsable --dependency=afterok:$P {shlex.quote(jobs_dir)}/data.sbatch) || fail data; "
                   "D=${D%%;*}; ALL=\"$ALL $D\""]
    chunks = []
    previous = ""
    for n, (offset, task_ids) in enumerate(array_chunks(indices, max_array_size)):
        name = f"model-{attempt}-{n}.sbatch"
        directives = {"array": f"{compress(task_ids)}%{opts.parallel}", **opts.directives(model=True)}
        files[name] = sbatch_script(f"{slug}-model", f"{out_dir}/model-%A_%a.out", directives,
                                    f"exec bash {shlex.quote(jobs_dir)}/task-{attempt}.sh "
                                    f"$(({offset} + SLURM_ARRAY_TASK_ID))")
        deps = [d for d in ("afterok:$D" if with_stages else "", f"afterany:${previous}" if previous else "") if d]
        dep = f" --dependency={','.join(deps)}" if deps else ""
        var = f"M{n}"
        submit.append(f"{var}=$(sbatch --parsable{dep} {shlex.quote(jobs_dir)}/{name}) || fail {name}; "
                      f"{var}=${{{var}%%;*}}; ALL=\"$ALL ${var}\"")
        chunks.append({"var": var, "offset": offset, "indices": [offset + t for t in task_ids]})
        previous = var
    if with_stages:
        submit.append('echo "params $P"; echo "data $D"')
    submit.append('echo "model ' + " ".join(f"${c['var']}" for c in chunks) + '"')
    return files, "\n".join(submit) + "\n", chunks


def runner_script(run_dir: str, indices: list[int], parallel: int, attempt: int, with_stages: bool) -> str:
    """scheduler = none: params, data, then the model tasks `parallel` at a time (xargs -P)."""
    q = shlex.quote(f"{run_dir}/state/jobs")
    stages_part = (f"bash {q}/stage.sh params || exit 1\nbash {q}/stage.sh data || exit 1\n"
                   if with_stages else "")
    return (f"#!/bin/bash\nset -u\n{stages_part}"
            f"printf '%s\\n' {' '.join(map(str, indices))} | xargs -P {parallel} -n 1 bash {q}/task-{attempt}.sh\n"
            "exit 0\n")


def parse_sacct(text: str) -> dict[str, str]:
    """`sacct -n -P -X -o JobID,State` -> {'<job>' or '<job>_<task>': STATE}; pending ranges expanded."""
    out = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job, state = line.split("|")[:2]
        base, _, task = job.partition("_")
        if task.startswith("["):
            for t in expand_array(task):
                out[f"{base}_{t}"] = state
        else:
            out[job] = state
    return out


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol -o show job` records -> the same mapping as parse_sacct."""
    out = {}
    for line in text.splitlines():
        f = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobState" not in f:
            continue
        if f.get("ArrayJobId") and f.get("ArrayTaskId"):
            for t in expand_array(f["ArrayTaskId"]):
                out[f"{f['ArrayJobId']}_{t}"] = f["JobState"]
        else:
            out[f.get("JobId", "?")] = f["JobState"]
    return out


def merge(index: list[dict], records: dict[str, dict], attempts: list[dict], sched: dict[str, str],
          runner_alive: bool | None = None) -> dict[str, dict]:
    """One state per configuration from the task records and the scheduler's view.

    A task record of the latest attempt that is final wins; a record saying running is overruled by
    a final scheduler state (timeout, out-of-memory, cancelled: the wrapper was killed).
    """
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
        rec = records.get(cid) or {}
        s = slurm_state(sched[job]) if job and job in sched else None
        if rec.get("attempt", 1) == attempt and rec.get("status") in TERMINAL:
            state = dict(rec)
        elif s in TERMINAL and s != "completed":
            state = {**rec, "status": s, "attempt": attempt}
        elif rec.get("attempt", 1) == attempt and rec.get("status") == "running":
            # running per its record; if the runner (none) or SLURM has forgotten it, it died unseen
            gone = (runner_alive is False) or (job is not None and s is None and runner_alive is None)
            state = {**rec, "status": "failed" if gone else "running"}
        elif s is not None:
            state = {**rec, "status": s, "attempt": attempt}
        elif runner_alive:
            state = {"status": "pending", "attempt": attempt}
        else:
            # never started and nobody will start it (stage failed, cancelled, or purged by SLURM)
            state = {**rec, "status": "cancelled" if attempt else "pending", "attempt": attempt}
        out[cid] = {"config_id": cid, "index": i, **state}
    return out


# ------------------------------------------------------------------ remote side

def run_id_from_env(explicit: str | None = None) -> str:
    """The run of this pipeline: --run-id, else MLOPS_RUN_ID, else p<CI_PIPELINE_ID>, else the last submit."""
    if explicit:
        return explicit
    if os.environ.get("MLOPS_RUN_ID"):
        return os.environ["MLOPS_RUN_ID"]
    if os.environ.get("CI_PIPELINE_ID"):
        return f"p{os.environ['CI_PIPELINE_ID']}"
    return ""


def _last_run_file(cfg) -> Path:
    return cfg.root / ".mlops" / "last-run"


def resolve_run_id(cfg, explicit: str | None = None) -> str:
    run_id = run_id_from_env(explicit)
    if run_id:
        return run_id
    try:
        return _last_run_file(cfg).read_text().strip()
    except FileNotFoundError:
        raise SubmitError("no run given: pass --run-id (or MLOPS_RUN_ID); in CI it is p$CI_PIPELINE_ID") from None


def _check_run_id(run_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}", run_id):
        raise SubmitError(f"run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id


def images_on_cluster(cfg, manifest: dict) -> dict[str, runtime.Image]:
    rt = str(cfg["cluster"].get("runtime", ""))
    store = f"{runtime.cluster_root(cfg)}/images"
    found = manifest.get("images", {})
    missing = [s.name for s in stages.STAGES if s.name not in found]
    if missing:
        raise SubmitError(f"images manifest lacks {', '.join(missing)}: run `mlops build` then `mlops deploy`")
    return {s.name: runtime.Image(s.name, found[s.name]["digest"], store, cfg.slug, rt) for s in stages.STAGES}


def _read_remote_state(session, run_dir: str) -> dict:
    script = r"""import glob, json, os, sys
run = sys.argv[1]
def load(p, default=None):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return default
out = {"exists": os.path.isdir(run), "attempts": load(run + "/state/jobs.json", []),
       "index": (load(run + "/envs/index.json") or {}).get("configurations"),
       "records": {os.path.basename(p)[:-5]: load(p) for p in glob.glob(run + "/state/tasks/*.json")},
       "stages": {}}
for name in ("params", "data"):
    try:
        out["stages"][name] = int(open(run + "/state/" + name + ".rc").read())
    except (OSError, ValueError):
        pass
pid = next((a.get("pid") for a in reversed(out["attempts"]) if a.get("pid")), None)
if pid:
    try:
        os.kill(pid, 0); out["runner_alive"] = True
    except ProcessLookupError:
        out["runner_alive"] = False
    except PermissionError:
        out["runner_alive"] = True
print(json.dumps(out))
"""
    return json.loads(session.python(script, run_dir))


def slurm_view(session, job_ids: list[str]) -> dict[str, str]:
    """Job states from sacct where accounting exists, else scontrol (kept MinJobAge after the end)."""
    if not job_ids:
        return {}
    ids = ",".join(job_ids)
    rc, out, err = session.run(f"sacct -n -P -X -j {shlex.quote(ids)} -o JobID,State", check=False, timeout=60)
    if rc == 0 and out.strip():
        return parse_sacct(out)
    rc, out, _ = session.run(" ; ".join(f"scontrol -o show job {shlex.quote(j)} 2>/dev/null" for j in job_ids)
                             + " ; true", check=False, timeout=60)
    return parse_scontrol(out)


def status(session, cfg, run_id: str) -> dict:
    """{'run_dir', 'stages', 'configs': {cid: state}, 'counts'} for a run on the cluster."""
    run_dir = f"{runtime.cluster_root(cfg)}/runs/{_check_run_id(run_id)}"
    remote = _read_remote_state(session, run_dir)
    if not remote["exists"]:
        raise SubmitError(f"run {run_id} does not exist on the cluster ({run_dir}); was it submitted?")
    attempts = remote["attempts"]
    sched: dict[str, str] = {}
    stage_states = {}
    if any(a.get("kind") == "slurm" for a in attempts):
        ids = [str(x) for a in attempts for x in
               [a.get("params"), a.get("data"), *(c.get("job") for c in a.get("model", []))] if x]
        sched = slurm_view(session, ids)
        first = attempts[0]
        for name in ("params", "data"):
            if first.get(name):
                stage_states[name] = slurm_state(sched[str(first[name])]) if str(first[name]) in sched else None
    for name, rc in remote["stages"].items():
        stage_states[name] = "completed" if rc == 0 else "failed"
    index = remote["index"] or []
    if not index:  # params has not run yet (or failed): the configurations are known from the submission
        index = [{"index": i, "config_id": cid} for i, cid in enumerate(attempts[0].get("config_ids", []))] \
            if attempts else []
    runner_alive = remote.get("runner_alive")
    configs = merge(index, {k: v for k, v in remote["records"].items() if v}, attempts, sched, runner_alive)
    if any(s == "failed" for s in stage_states.values()):
        for st in configs.values():
            if st["status"] in ("pending",):
                st["status"] = "cancelled"
    counts = {s: sum(c["status"] == s for c in configs.values()) for s in rundir.STATES}
    return {"run_id": run_id, "run_dir": run_dir, "stages": stage_states, "configs": configs, "counts": counts,
            "attempts": attempts}


def finished(view: dict) -> bool:
    return bool(view["configs"]) and all(c["status"] in TERMINAL for c in view["configs"].values())


def wait(session, cfg, run_id: str, timeout: float, interval: float = 5.0, out=sys.stderr) -> dict:
    """Poll status over the one session until every configuration is final (bounded by timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        view = status(session, cfg, run_id)
        if finished(view) or time.monotonic() > deadline:
            return view
        print(f"  waiting: {format_counts(view['counts'])}", file=out, flush=True)
        time.sleep(interval)


def format_counts(counts: dict) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no configurations"


def _stage_env(cfg, run_id: str, manifest: dict, commit: str) -> str:
    """The env file of the params and data stages: the run context (never a secret)."""
    mode = str(cfg["wandb"].get("mode", "offline"))
    tags = [f"commit={commit[:12]}"] + [f"{n}@{img['digest'][:19]}" for n, img in sorted(manifest["images"].items())]
    env = {"RUN_ID": run_id, "PROJECT_DIR": runtime.MOUNT,
           # Compute nodes have no network: runs are written offline and synced by `mlops collect`.
           "WANDB_MODE": "disabled" if mode == "disabled" else "offline",
           "WANDB_PROJECT": str(cfg["wandb"].get("project") or cfg.slug), "WANDB_RUN_GROUP": run_id,
           "WANDB_TAGS": ",".join(tags)}
    if cfg["wandb"].get("entity"):
        env["WANDB_ENTITY"] = str(cfg["wandb"]["entity"])
    for name, value in env.items():
        if not params.SAFE_VALUE.match(value):
            raise SubmitError(f"{name}={value!r}: characters an env file cannot carry; fix mlops.toml [wandb]")
    return "".join(f"{k}={v}\n" for k, v in env.items())


def submit(session, cfg, manifest: dict, run_id: str, failed_only: bool = False, out=sys.stderr) -> dict:
    """Create the run directory (never reusing one) and start the sweep; returns the attempt record."""
    kind = str(cfg["scheduler"].get("kind", "slurm"))
    if kind not in ("slurm", "none"):
        raise SubmitError(f"mlops.toml scheduler.kind: {kind!r} is not slurm or none")
    opts = SlurmOptions.from_config(cfg)
    images = images_on_cluster(cfg, manifest)
    root = runtime.cluster_root(cfg)
    run_dir = f"{root}/runs/{_check_run_id(run_id)}"
    jobs_dir = f"{run_dir}/state/jobs"
    # Every image must be deployed and converted; otherwise say so before creating anything.
    checks = " && ".join(f"{{ {runtime.converted_test(img)} || {{ echo {shlex.quote(n)}; false; }}; }}"
                         for n, img in images.items())
    rc, missing, _ = session.run(checks, check=False)
    if rc != 0:
        raise SubmitError(f"image {missing.strip()} (digest {images[missing.strip()].digest[:19]}) is not on the "
                          "cluster: run `mlops deploy` for this commit first")
    gpu = opts.gpu
    root_dir = cfg.root
    argv = {name: runtime.run_argv(img, run_dir, Raw('"$ENV_FILE"') if name == "model" else f"{run_dir}/state/stage.env",
                                   gpu=gpu and name == "model", entrypoint=runtime.raw_entrypoint(root_dir, name))
            for name, img in images.items()}
    if failed_only:
        view = status(session, cfg, run_id)
        todo = sorted(c["index"] for c in view["configs"].values() if c["status"] != "completed")
        unfinished = [c for c in view["configs"].values() if c["status"] in ("pending", "running")]
        if unfinished:
            raise SubmitError(f"run {run_id} still has {len(unfinished)} pending/running configurations: "
                              "wait for them (mlops status) or `mlops cancel` first")
        if not todo:
            print(f"run {run_id}: every configuration completed; nothing to rerun", file=out)
            return {}
        attempt = max(a["attempt"] for a in view["attempts"]) + 1
        config_ids = view["attempts"][0].get("config_ids", [])
    else:
        doc = params.validate(cfg.root / "params" / "parameters.json")
        config_ids = [c.config_id for c in params.expand(doc)]
        todo, attempt = list(range(len(config_ids))), 1
        commit = os.environ.get("CI_COMMIT_SHA") or rundir.git_commit(cfg.root)
        with tempfile.TemporaryDirectory() as tmp:
            local = rundir.create(Path(tmp), run_id, {
                "mode": kind, "commit": commit, "pipeline": os.environ.get("CI_PIPELINE_ID"),
                "images": {n: img["digest"] for n, img in manifest["images"].items()},
                "runtime": images["model"].runtime, "parameters_sha256":
                    params.file_sha256(cfg.root / "params" / "parameters.json"),
                "configurations": len(config_ids)})
            record = (local / "run.json").read_bytes()
        # mkdir without -p for the run itself: an existing run is never reused or overwritten.
        rc, _, err = session.run(f"mkdir -p {shlex.quote(root + '/runs')} && mkdir -m 700 {shlex.quote(run_dir)} && "
                                 f"cd {shlex.quote(run_dir)} && mkdir -m 700 -p state/tasks state/jobs state/slurm results",
                                 check=False)
        if rc != 0:
            raise SubmitError(f"cannot create {run_dir}: {err.strip()} (a run id is used once: for a rerun of "
                              "failed configurations use `mlops submit --failed-only`)")
        session.write_file(f"{run_dir}/run.json", record, 0o600)
        session.write_file(f"{run_dir}/state/stage.env", _stage_env(cfg, run_id, manifest, commit).encode(), 0o600)
        session.write_file(f"{jobs_dir}/stage.sh", stage_script(
            run_dir, {n: argv[n] for n in ("params", "data")}).encode(), 0o700)
    session.write_file(f"{jobs_dir}/task-{attempt}.sh", task_script(run_dir, argv["model"], attempt).encode(), 0o700)
    record = {"attempt": attempt, "kind": kind, "indices": todo, "submitted": time.time()}
    if attempt == 1:
        record["config_ids"] = config_ids
    if kind == "slurm":
        _, show, _ = session.run("scontrol show config", check=False)
        max_array = parse_max_array_size(show)
        files, submit_sh, chunks = slurm_jobs(run_dir, cfg.slug, opts, todo, max_array, attempt,
                                              with_stages=not failed_only)
        for name, text in files.items():
            session.write_file(f"{jobs_dir}/{name}", text.encode(), 0o600)
        rc, stdout, err = session.run(["bash", "-c", submit_sh], check=False)
        if rc != 0:
            raise SubmitError(f"sbatch refused the jobs: {err.strip()[-1500:]}")
        ids = {k: v for k, _, v in (line.partition(" ") for line in stdout.splitlines()) if v}
        ids["model"] = ids["model"].split()
        record.update({k: ids[k] for k in ("params", "data") if k in ids}, max_array_size=max_array,
                      model=[{"job": j, "offset": c["offset"], "indices": c["indices"]}
                             for j, c in zip(ids["model"], chunks)])
        print(f"run {run_id}: submitted " + ", ".join(
            [f"{k} job {record[k]}" for k in ("params", "data") if k in record] +
            [f"model array {m['job']} ({len(m['indices'])} tasks, %{opts.parallel})" for m in record["model"]]),
            file=out)
    else:
        session.write_file(f"{jobs_dir}/runner-{attempt}.sh",
                           runner_script(run_dir, todo, opts.parallel, attempt, not failed_only).encode(), 0o700)
        _, stdout, _ = session.run(f"cd {shlex.quote(run_dir)} && setsid nohup bash state/jobs/runner-{attempt}.sh "
                                   f"> state/runner-{attempt}.log 2>&1 < /dev/null & echo $!")
        record.update(pid=int(stdout.strip()), model=[{"job": None, "offset": 0, "indices": todo}])
        print(f"run {run_id}: started on the login host (pid {record['pid']}, {opts.parallel} at a time)", file=out)
    attempts = _read_remote_state(session, run_dir)["attempts"] if failed_only else []
    session.write_file(f"{run_dir}/state/jobs.json", json.dumps(attempts + [record], indent=1).encode(), 0o600)
    if not failed_only:
        path = _last_run_file(cfg)
        path.parent.mkdir(exist_ok=True)
        path.write_text(run_id + "\n")
    return record


def cancel(session, cfg, run_id: str, out=sys.stderr) -> int:
    """Cancel the cluster jobs of a run (all attempts); returns how many jobs/runners were signalled."""
    view = status(session, cfg, run_id)
    n = 0
    for a in view["attempts"]:
        if a.get("kind") == "slurm":
            ids = [str(x) for x in [a.get("params"), a.get("data"), *(c["job"] for c in a.get("model", []))] if x]
            session.run(["scancel", *ids], check=False)
            n += len(ids)
        elif a.get("pid"):
            # the runner is a session leader (setsid): signal its whole process group
            session.run(f"kill -TERM -- -{int(a['pid'])} 2>/dev/null; true", check=False)
            n += 1
    print(f"run {run_id}: cancel sent to {n} job(s)", file=out)
    return n
