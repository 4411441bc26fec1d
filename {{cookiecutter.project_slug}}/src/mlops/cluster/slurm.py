"""SLURM's side of a sweep: job states, sacct/scontrol parsing, array chunks and #SBATCH lines.

Pure functions over text (unit-tested without SLURM). A batch script is data, as in submitit's
`_make_sbatch_string`: one `#SBATCH --key=value` line per option, then ONE command line that runs a
shell file of mlops.cluster.shell with quoted arguments. Nothing secret is ever in a batch script.
Sources: sbatch(1) (--array, --dependency, --kill-on-invalid-dep, --parsable), sacct(1) (-P output,
pending array records such as `12_[1-3%2]`), scontrol(1) (`-o show job`: ArrayJobId/ArrayTaskId),
slurm.conf(5) (MaxArraySize, default 1001).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..remote import Remote
    from ..settings import Settings

from ..errors import BadInput

TERMINAL = ("completed", "failed", "timeout", "out-of-memory", "cancelled")
# SLURM job states (squeue(1) "JOB STATE CODES") -> mlops.rundir.STATES
SLURM_STATES = {
    "PENDING": "pending", "REQUEUED": "pending", "RESIZING": "pending", "SUSPENDED": "pending",
    "RUNNING": "running", "CONFIGURING": "running", "COMPLETING": "running", "STAGE_OUT": "running",
    "SIGNALING": "running", "COMPLETED": "completed", "FAILED": "failed", "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed", "SPECIAL_EXIT": "failed", "REVOKED": "cancelled", "TIMEOUT": "timeout",
    "DEADLINE": "timeout", "OUT_OF_MEMORY": "out-of-memory", "CANCELLED": "cancelled",
    "PREEMPTED": "cancelled",
}  # fmt: skip
JOB_ID = re.compile(r"[0-9]{1,18}")
# Characters an #SBATCH value may carry: partition/account names, times, sizes, gres (no space, no
# quote, no newline: a value can never start a second directive or a command).
_DIRECTIVE_VALUE = re.compile(r"[A-Za-z0-9_.:,%=+/-]{1,200}")


def slurm_state(raw: str) -> str:
    """'CANCELLED by 1000' / 'OUT_OF_MEMORY' / 'RUNNING+' -> one of mlops.rundir.STATES."""
    word = raw.strip().split()[0].rstrip("+") if raw.strip() else ""
    return SLURM_STATES.get(word, "failed" if word else "pending")


def compress(indices: list[int]) -> str:
    """[0,1,2,5,7,8] -> '0-2,5,7-8' (the --array syntax)."""
    parts: list[str] = []
    run: list[int] = []
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
    """'0-2,5,7-9:2%4' -> [0,1,2,5,7,9] (a pending array record of scontrol/sacct).

    Raises ValueError for text that is not an array spec (the caller treats the record as bad).
    """
    out: list[int] = []
    for part in spec.split("%")[0].strip("[]").split(","):
        if not part:
            continue
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        stop = int(hi or lo) + 1
        if stop - int(lo) > 1_000_000:
            raise ValueError(f"array range {part!r} is larger than any MaxArraySize")
        out += list(range(int(lo), stop, int(step or 1)))
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
    """MaxArraySize from `scontrol show config`; SLURM's documented default 1001 when absent."""
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", show_config, re.MULTILINE)
    return int(match.group(1)) if match else 1001


@dataclass(frozen=True)
class SlurmOptions:
    """The #SBATCH options of the selected cluster block of mlops.toml (mlops.settings.Scheduler + use_gpu)."""

    partition: str = ""
    account: str = ""
    time: str = "01:00:00"
    cpus_per_task: int = 1
    mem: str = ""
    parallel: int = 4
    gpu: bool = False
    notify_partition: str = ""

    @classmethod
    def from_settings(cls, s: Settings) -> SlurmOptions:
        """From mlops.settings.Settings (already validated there); each value is checked again here
        because it becomes an #SBATCH line (raises BadInput naming the mlops.toml key)."""
        sc = s.scheduler
        opts = cls(partition=sc.partition, account=sc.account, time=sc.time, cpus_per_task=sc.cpus_per_task,
                   mem=sc.mem, parallel=sc.parallel, gpu=s.cluster.use_gpu,
                   notify_partition=sc.notify_partition or sc.partition)  # fmt: skip
        if opts.parallel < 1:
            raise BadInput(f"mlops.toml clusters.{s.cluster.name}.parallel: must be at least 1 (model tasks at once)")
        for key in ("partition", "account", "time", "mem", "notify_partition"):
            value = getattr(opts, key)
            if value and not _DIRECTIVE_VALUE.fullmatch(value):
                raise BadInput(
                    f"mlops.toml clusters.{s.cluster.name}.{key}: {value!r} is not a SLURM value "
                    "(letters, digits, _.:,%=+/-)"
                )
        return opts

    def directives(self, job: str) -> dict[str, str]:
        """#SBATCH options for job 'params', 'data', 'model' or 'notify' (without array/dependency)."""
        if job == "notify":  # tiny: one CPU, a minute, maybe a partition with outbound network
            d = {
                "partition": self.notify_partition,
                "account": self.account,
                "time": "00:05:00",
                "cpus-per-task": "1",
                "mem": "100M",
            }
        else:
            d = {
                "partition": self.partition,
                "account": self.account,
                "time": self.time,
                "cpus-per-task": str(self.cpus_per_task),
                "mem": self.mem,
            }
            if job != "params":  # a job whose afterok can never hold is ended, so afterany waiters run
                d["kill-on-invalid-dep"] = "yes"
            if job == "model" and self.gpu:
                d["gres"] = "gpu:1"
        return {k: v for k, v in d.items() if v}


def sbatch_script(job_name: str, output: str, directives: dict[str, str], argv: list[str]) -> str:
    """A batch script from data: #SBATCH lines, then one command line (`exec` + quoted argv).

    An argv word starting with `$((` is an arithmetic expansion that stays unquoted (the array index).
    Raises ValueError for a newline anywhere (a value must never begin a second line).
    """
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --output={output}"]
    lines += [f"#SBATCH --{k}={v}" for k, v in directives.items()]
    words = [a if re.fullmatch(r"\$\(\([0-9]+ \+ SLURM_ARRAY_TASK_ID\)\)", a) else shlex.quote(a) for a in argv]
    lines.append("exec " + " ".join(words))
    text = "\n".join(lines) + "\n"
    if any("\n" in part or "\r" in part for part in [job_name, output, *directives.values(), *argv]):
        raise ValueError("a batch script value contains a newline")
    return text


def batch_scripts(
    run_dir: str,
    slug: str,
    opts: SlurmOptions,
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
    files: dict[str, str] = {}
    if with_stages:
        for stage in ("params", "data"):
            files[f"{stage}.sbatch"] = sbatch_script(
                f"{slug}-{stage}",
                f"{out}/{stage}-%j.out",
                opts.directives(stage),
                ["bash", f"{jobs}/stage.sh", run_dir, stage],
            )
    chunks = []
    for n, (offset, task_ids) in enumerate(array_chunks(indices, max_array_size)):
        directives = {"array": f"{compress(task_ids)}%{opts.parallel}", **opts.directives("model")}
        files[f"model-{attempt}-{n}.sbatch"] = sbatch_script(
            f"{slug}-model",
            f"{out}/model-%A_%a.out",
            directives,
            ["bash", f"{jobs}/task.sh", run_dir, str(attempt), f"$(({offset} + SLURM_ARRAY_TASK_ID))"],
        )
        chunks.append({"offset": offset, "indices": [offset + t for t in task_ids]})
    if notify_argv is not None:
        files[f"notify-{attempt}.sbatch"] = sbatch_script(
            f"{slug}-notify",
            f"{out}/notify-%j.out",
            opts.directives("notify"),
            ["bash", f"{jobs}/notify.sh", run_dir, *notify_argv],
        )
    return files, chunks


def parse_submitted(lines: list[str]) -> tuple[dict[str, str], list[str], bool]:
    """The "NAME ID" lines of submit_slurm.sh (stdout or submitted-N.txt; "done" at the end).

    Returns ({'params'|'data'|'notify': id}, [model array ids in order], done). Lines that are not
    "NAME <job id>" are ignored (the file is untrusted).
    """
    named: dict[str, str] = {}
    model: list[str] = []
    done = False
    for line in lines:
        name, _, job = line.strip().partition(" ")
        if name == "done" and not job:
            done = True
        elif name in ("params", "data", "notify", "model") and JOB_ID.fullmatch(job):
            if name == "model":
                model.append(job)
            else:
                named[name] = job
    return named, model, done


def parse_sacct(text: str) -> dict[str, str]:
    """`sacct -n -P -X -o JobID,State` -> {'<job>' or '<job>_<task>': STATE}; pending ranges expanded."""
    out = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job, state = line.split("|")[:2]
        base, _, task = job.partition("_")
        try:
            if task.startswith("["):
                for t in expand_array(task):
                    out[f"{base}_{t}"] = state
                continue
        except ValueError:
            continue
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
            try:
                for t in expand_array(f["ArrayTaskId"]):
                    out[f"{f['ArrayJobId']}_{t}"] = f["JobState"]
            except ValueError:
                continue
        else:
            out[f.get("JobId", "?")] = f["JobState"]
    return out


def scheduler_view(session: Remote, job_ids: list[str]) -> dict[str, str]:
    """Job states from sacct where accounting exists, else scontrol (kept MinJobAge after the end).

    `job_ids` must already be validated (JOB_ID); they are still quoted.
    """
    if not job_ids:
        return {}
    rc, out, _ = session.run(
        f"sacct -n -P -X -j {shlex.quote(','.join(job_ids))} -o JobID,State", check=False, timeout=60
    )
    if rc == 0 and out.strip():
        return parse_sacct(out)
    _, out, _ = session.run(
        " ; ".join(f"scontrol -o show job {shlex.quote(j)} 2>/dev/null" for j in job_ids) + " ; true",
        check=False,
        timeout=60,
    )
    return parse_scontrol(out)
