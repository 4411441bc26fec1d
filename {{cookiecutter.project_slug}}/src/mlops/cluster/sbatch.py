"""The batch scripts of one attempt of a run, built from mlops.settings.Settings and nothing else.

A batch script is data, as in submitit's `_make_sbatch_string`: one `#SBATCH --key=value` line per
option, then ONE command line that runs a shell file of mlops.cluster.shell with quoted arguments.
Every value comes from Settings, which checked it once (mlops.options holds the defaults and rules);
nothing here has a default or a rule of its own. Nothing secret is ever in a batch script.
  params, data  partition, account, stage_time and stage_mem: `time`, `mem` and `cpus_per_task` are
                per MODEL TASK (as documented), the two stages run once per run and ask for little
  model         partition, account, time, cpus_per_task, mem (+ --gres=gpu:1 with use_gpu), the array
  notify        one small fixed request (NOTIFY): it runs one curl
Job names are `<slug>-<run id>-<attempt>-<job>`: unique per attempt, so that a job sbatch created
but never reported (a cut submission) can still be found and cancelled by name (`scancel --name`).
Sources: sbatch(1) (--array, --dependency, --kill-on-invalid-dep, --job-name, --output).
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from . import slurm

if TYPE_CHECKING:
    from ..settings import Settings

JOBS = ("params", "data", "model", "notify")
# The notification job: one curl (or python3) bounded by notify.timeout_s; these fit any partition.
NOTIFY = {"time": "00:05:00", "cpus-per-task": "1", "mem": "100M"}
_ARRAY_INDEX = re.compile(r"\$\(\([0-9]+ \+ SLURM_ARRAY_TASK_ID\)\)")


def job_name(slug: str, run_id: str, attempt: int, job: str) -> str:
    """`<slug>-<run id>-<attempt>-<job>` (slug and run id are checked words: no space, no quote)."""
    return f"{slug}-{run_id}-{int(attempt)}-{job}"


def job_names(slug: str, run_id: str, attempt: int) -> list[str]:
    """The names every job of one attempt may carry (what a cut submission is cancelled by)."""
    return [job_name(slug, run_id, attempt, job) for job in JOBS]


def _notify_partition(s: Settings) -> str:
    return s.scheduler.notify_partition or s.scheduler.partition


def directives(s: Settings, job: str) -> dict[str, str]:
    """#SBATCH options of job 'params', 'data', 'model' or 'notify' (without array, dependency, name)."""
    sc = s.scheduler
    d = {"partition": sc.partition, "account": sc.account}
    if job == "notify":
        d = {"partition": _notify_partition(s), "account": sc.account, **NOTIFY}
    elif job in ("params", "data"):
        d.update({"time": sc.stage_time, "mem": sc.stage_mem})
    elif job == "model":
        d.update({"time": sc.time, "cpus-per-task": str(sc.cpus_per_task), "mem": sc.mem})
        if s.cluster.use_gpu:
            d["gres"] = "gpu:1"
    if job in ("data", "model"):  # a job whose afterok can never hold is ended, so afterany waiters run
        d["kill-on-invalid-dep"] = "yes"
    return {k: v for k, v in d.items() if v}


def sbatch_script(job_name: str, output: str, options: dict[str, str], argv: list[str]) -> str:
    """A batch script from data: #SBATCH lines, then one command line (`exec` + quoted argv).

    An argv word `$((<offset> + SLURM_ARRAY_TASK_ID))` stays unquoted (the array index). Raises
    ValueError for a newline anywhere: a value must never begin a second line (Settings refuses
    such values; this is the last guard, not a check of the settings).
    """
    if any("\n" in part or "\r" in part for part in [job_name, output, *options.values(), *argv]):
        raise ValueError("a batch script value contains a newline")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --output={output}"]
    lines += [f"#SBATCH --{k}={v}" for k, v in options.items()]
    words = [a if _ARRAY_INDEX.fullmatch(a) else shlex.quote(a) for a in argv]
    lines.append("exec " + " ".join(words))
    return "\n".join(lines) + "\n"


def batch_scripts(
    s: Settings,
    run_dir: str,
    run_id: str,
    indices: list[int],
    max_array_size: int,
    attempt: int,
    with_stages: bool,
    notify_argv: list[str] | None,
) -> tuple[dict[str, str], list[dict]]:
    """The batch scripts of one attempt, for shell/submit_slurm.sh.

    Returns ({file name in state/jobs: script}, [model chunk {"offset", "indices"}] in submission order).
    """
    jobs, out = f"{run_dir}/state/jobs", f"{run_dir}/state/slurm"

    def name(job: str) -> str:
        return job_name(s.project.slug, run_id, attempt, job)

    files: dict[str, str] = {}
    if with_stages:
        for stage in ("params", "data"):
            files[f"{stage}.sbatch"] = sbatch_script(
                name(stage), f"{out}/{stage}-%j.out", directives(s, stage), ["bash", f"{jobs}/stage.sh", run_dir, stage]
            )
    chunks = []
    for n, (offset, task_ids) in enumerate(slurm.array_chunks(indices, max_array_size)):
        options = {"array": f"{slurm.compress(task_ids)}%{s.scheduler.parallel}", **directives(s, "model")}
        files[f"model-{attempt}-{n}.sbatch"] = sbatch_script(
            name("model"),
            f"{out}/model-%A_%a.out",
            options,
            ["bash", f"{jobs}/task.sh", run_dir, str(attempt), f"$(({offset} + SLURM_ARRAY_TASK_ID))"],
        )
        chunks.append({"offset": offset, "indices": [offset + t for t in task_ids]})
    if notify_argv is not None:
        files[f"notify-{attempt}.sbatch"] = sbatch_script(
            name("notify"),
            f"{out}/notify-%j.out",
            directives(s, "notify"),
            ["bash", f"{jobs}/notify.sh", run_dir, *notify_argv],
        )
    return files, chunks
