"""SLURM's words: job states, what sbatch/sacct/scontrol print, array specs and chunks.

Pure functions over text (unit-tested without SLURM); nothing here talks to the cluster. Sources:
squeue(1) "JOB STATE CODES", sbatch(1) (--array, --parsable: "jobid[;cluster_name]"), sacct(1) (-P
output, pending array records such as `12_[1-3%2]`), scontrol(1) (`-o show job`: ArrayJobId,
ArrayTaskId, JobState, Restarts), slurm.conf(5) (MaxArraySize, default 1001).
"""

from __future__ import annotations

import re

from ..rundir import FINAL

# SLURM job states -> mlops.rundir.STATES. SLURM's word decides a configuration's state whenever SLURM
# still knows the job (mlops.cluster.state.merge).
SLURM_STATES = {
    "PENDING": "pending", "RESIZING": "pending", "SUSPENDED": "pending",
    "REQUEUED": "requeued", "REQUEUE_HOLD": "requeued", "REQUEUE_FED": "requeued",
    "RUNNING": "running", "CONFIGURING": "running", "COMPLETING": "running", "STAGE_OUT": "running",
    "SIGNALING": "running", "COMPLETED": "completed", "FAILED": "failed", "SPECIAL_EXIT": "failed",
    "TIMEOUT": "timeout", "OUT_OF_MEMORY": "out-of-memory", "PREEMPTED": "preempted",
    "NODE_FAIL": "node-fail", "BOOT_FAIL": "boot-fail", "DEADLINE": "deadline", "CANCELLED": "cancelled",
    "REVOKED": "cancelled",
}  # fmt: skip
JOB_ID = re.compile(r"[0-9]{1,18}")
# One line of `sbatch --parsable`: "jobid" or "jobid;cluster_name" (sbatch(1)).
_PARSABLE = re.compile(r"([0-9]{1,18})(;[A-Za-z0-9_.-]{1,100})?")
_MAX_RANGE = 1_000_000  # larger than any MaxArraySize: an array record beyond it is not SLURM's


def slurm_state(raw: str) -> str:
    """'CANCELLED by 1000' / 'OUT_OF_MEMORY' / 'RUNNING+' -> one of mlops.rundir.STATES.

    A word SLURM may add in a later version counts as "failed" (final, so a run can still end).
    """
    word = raw.strip().split()[0].rstrip("+") if raw.strip() else ""
    return SLURM_STATES.get(word, "failed" if word else "pending")


def is_final(state: str) -> bool:
    """Whether a configuration in `state` (mlops.rundir.STATES) has ended."""
    return state in FINAL


def parsable_job_id(stdout: str) -> str | None:
    """The job id of `sbatch --parsable` output: its last line of the form ID or ID;CLUSTER.

    A site's job_submit plugin may print other lines first ("sbatch: INFO: ..."); None when no line
    has that form. The twin of this rule in shell/submit_slurm.sh is what submissions use.
    """
    found = None
    for line in stdout.splitlines():
        match = _PARSABLE.fullmatch(line.strip())
        if match:
            found = match.group(1)
    return found


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
        if stop - int(lo) > _MAX_RANGE:
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


def parse_submitted(lines: list[str]) -> tuple[dict[str, str], list[str], bool]:
    """The "NAME ID" lines of shell/submit_slurm.sh (its stdout or submitted-N.txt; "done" at the end).

    Returns ({'params'|'data'|'notify': id}, [model array ids in order], done). Lines that are not
    "NAME <job id>" are ignored (the file is untrusted, and a login shell may print before it).
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


def _add(out: dict[str, str], base: str, task: str, state: str) -> None:
    """One record of sacct/scontrol into out; a pending array range is expanded, junk is dropped."""
    if not JOB_ID.fullmatch(base) or not state:
        return
    if not task:
        out[base] = state
        return
    try:
        for t in expand_array(task):
            out[f"{base}_{t}"] = state
    except ValueError:
        return


def parse_sacct(text: str) -> dict[str, str]:
    """`sacct -n -P -X -o JobID,State` -> {'<job>' or '<job>_<task>': STATE}; pending ranges expanded."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) >= 2:
            base, _, task = fields[0].partition("_")
            _add(out, base, task, fields[1].strip())
    return out


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol -o show job` records -> the same mapping as parse_sacct.

    A job that is pending again after SLURM restarted it (Restarts > 0: `scontrol requeue`,
    preemption or a node failure with requeue) is reported as REQUEUED, as SLURM counts it.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        f = dict(re.findall(r"(\w+)=(\S*)", line))
        state = f.get("JobState", "")
        if state == "PENDING" and f.get("Restarts", "0") not in ("", "0"):
            state = "REQUEUED"
        if f.get("ArrayJobId") and f.get("ArrayTaskId"):
            _add(out, f["ArrayJobId"], f["ArrayTaskId"], state)
        else:
            _add(out, f.get("JobId", ""), "", state)
    return out
