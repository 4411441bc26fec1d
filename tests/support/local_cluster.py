"""Stand-ins for the cluster room's unit tests: the SSH session and the SLURM clients, on this machine.

LocalSession(path_prefix, noise=...)   mlops.ssh.Session's run()/write_file() with bash here; every
                                       command is logged; `noise` is printed first on stdout, as a
                                       login shell with an echoing ~/.bashrc does before each command
fake_slurm(bin_dir, ...)               sbatch/scancel/squeue/scontrol/sacct stand-ins (shell files
                                       written into bin_dir); every call is logged to bin_dir/calls.log
FAKE_PYTHON36                          a `python3` that fails as python3.6 fails on code for 3.9+
                                       (and logs that it was called)
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from mlops import errors

# The message python3.6 gives for `list[str]` in an annotation (RHEL 8's /usr/bin/python3).
PY36_ERROR = "TypeError: 'type' object is not subscriptable"
FAKE_PYTHON36 = f"""#!/bin/bash
echo "python3 $*" >> "$(dirname "$0")/python3.log"
cat > /dev/null
echo "Traceback (most recent call last):" >&2
echo "{PY36_ERROR}" >&2
exit 1
"""


class LocalSession:
    """The SSH session's interface (run, write_file) on this machine: the 'cluster' is a directory here
    and SLURM is fake_slurm's stand-ins. `commands` lists every command run (for counting reads)."""

    def __init__(self, path_prefix: Path, noise: bytes = b""):
        self.env = {**os.environ, "PATH": f"{path_prefix}:{os.environ['PATH']}"}
        self.noise, self.commands = noise, []

    def run(self, command, stdin=None, timeout=600, check=True, stdout=None):
        if isinstance(command, list):
            command = shlex.join(command)
        self.commands.append(command)
        proc = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, env=self.env, timeout=timeout)
        data = self.noise + proc.stdout
        if stdout is not None:
            stdout.write(data)
            data = b""
        result = (proc.returncode, data.decode(errors="replace"), proc.stderr.decode(errors="replace"))
        if check and proc.returncode:
            raise errors.WorkFailed(f"{command}: {result[2]}")
        return result

    def write_file(self, path, data, mode=0o600):
        Path(path).write_bytes(data)
        Path(path).chmod(mode)

    def count(self, text: str) -> int:
        """How many commands run so far contain `text`."""
        return sum(text in c for c in self.commands)


def fake_slurm(bin_dir: Path, fail_on_call: int = 0, info: bool = False, no_id_on_call: int = 0) -> Path:
    """sbatch/scancel/squeue/scontrol/sacct stand-ins; returns the call log.

    sbatch answers ids 100, 101, ... as "ID;cluster"; with `info` a site plugin's "sbatch: INFO" line
    comes first on stdout; it fails once on its `fail_on_call`th call as a busy slurmctld does, and on
    its `no_id_on_call`th call it creates the job but answers no id. Jobs it created and nobody
    cancelled are listed by squeue (bin_dir/queue: "ID NAME" lines). sacct prints bin_dir/sacct.txt
    (exit 1 without it: no accounting), scontrol prints bin_dir/scontrol.txt, else a queued job as
    pending (an array with tasks 0-99), else "Invalid job id" (SLURM has forgotten it).
    """
    bin_dir.mkdir(exist_ok=True)
    log, queue = bin_dir / "calls.log", bin_dir / "queue"
    (bin_dir / "sbatch").write_text(f"""#!/bin/bash
n=$(cat {bin_dir}/n 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > {bin_dir}/n
echo "sbatch $*" >> {log}
if [ "$n" = "{fail_on_call}" ]; then
  echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1
fi
name=$(sed -n 's/^#SBATCH --job-name=//p' "${{!#}}")
echo "$((99 + n)) $name" >> {queue}
{'echo "sbatch: INFO: Job submitted to partition debug (site job_submit plugin)"' if info else ""}
if [ "$n" = "{no_id_on_call}" ]; then echo "sbatch: your job was accepted"; exit 0; fi
echo "$((99 + n));cluster"
""")
    (bin_dir / "scancel").write_text(f"""#!/bin/bash
echo "scancel $*" >> {log}
for a in "$@"; do
  case "$a" in
    --name=*) sed -i "/ ${{a#--name=}}$/d" {queue} 2>/dev/null ;;
    --*) ;;
    *) sed -i "/^$a /d" {queue} 2>/dev/null ;;
  esac
done
""")
    (bin_dir / "squeue").write_text(f"""#!/bin/bash
echo "squeue $*" >> {log}
names=","
for a in "$@"; do case "$a" in --name=*) names=",${{a#--name=}},";; esac; done
while read -r id name; do
  case "$names" in ,) echo "$id" ;; *",$name,"*) echo "$id" ;; esac
done < <(cat {queue} 2>/dev/null)
true
""")
    (bin_dir / "sacct").write_text(f"""#!/bin/bash
echo "sacct $*" >> {log}
[ -f {bin_dir}/sacct.txt ] || {{ echo "sacct: error: accounting storage is disabled" >&2; exit 1; }}
cat {bin_dir}/sacct.txt
""")
    (bin_dir / "scontrol").write_text(f"""#!/bin/bash
echo "scontrol $*" >> {log}
if [ "$1 $2" = "show config" ]; then echo "MaxArraySize            = 1001"; exit 0; fi
if [ -f {bin_dir}/scontrol.txt ]; then cat {bin_dir}/scontrol.txt; exit 0; fi
while read -r id name; do  # a job in the queue is pending (an array: every task of 0-99)
  [ "$id" = "$4" ] || continue
  case "$name" in
    *-model) echo "JobId=$id ArrayJobId=$id ArrayTaskId=0-99 JobState=PENDING Restarts=0" ;;
    *) echo "JobId=$id JobState=PENDING Restarts=0" ;;
  esac
  exit 0
done < <(cat {queue} 2>/dev/null)
echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1
""")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return log


def make_settings(root: Path = Path("."), **changes):
    """The default project's settings (the template's skeleton filled with the default answers) with
    some fields changed: make_settings(root, scheduler={"partition": "x"})."""
    import dataclasses
    import tomllib

    from mlops import settings

    from .render import PROJECT_TEMPLATE, answers_for

    skeleton = (PROJECT_TEMPLATE / "mlops.toml").read_text()
    s = settings.from_data(tomllib.loads(settings.fill_toml(skeleton, answers_for({}))), root)
    for section, values in changes.items():
        s = dataclasses.replace(s, **{section: dataclasses.replace(getattr(s, section), **values)})
    return s


def local_cluster(tmp_path: Path, **slurm_options) -> dict:
    """A project (the template's schema and Dockerfile entrypoints, three configurations) and a
    'cluster' directory with its images converted for apptainer, SLURM stand-ins in tmp_path/bin.

    Returns {"cfg", "manifest", "session", "log", "env", "run" (the run dir of run id p9), "bin"}.
    """
    import json

    from .render import TEMPLATE

    root = tmp_path / "project"
    for stage, entry in (
        ("params", '["mlops", "params", "expand"]'),
        ("data", '["python", "prepare.py"]'),
        ("model", '["python", "train.py"]'),
    ):
        (root / stage).mkdir(parents=True)
        (root / stage / "Dockerfile").write_text(f"FROM x\nENTRYPOINT {entry}\n")
    schema = TEMPLATE / "{{cookiecutter.project_slug}}" / "params" / "parameters.schema.json"
    (root / "params" / "parameters.schema.json").write_bytes(schema.read_bytes())
    (root / "params" / "parameters.json").write_text(
        json.dumps({"fixed": {"horizon": 24}, "grid": {"window": [1, 2, 3]}})
    )
    workdir = tmp_path / "hpc"
    cfg = make_settings(root, cluster={"workdir": str(workdir), "runtime": "apptainer"}, project={"slug": "proj"})
    digests = {name: "sha256:" + h * 64 for name, h in (("params", "a"), ("data", "b"), ("model", "c"))}
    manifest = {"images": {name: {"digest": d} for name, d in digests.items()}}
    (workdir / "proj" / "images").mkdir(parents=True)
    for name, d in digests.items():  # converted for apptainer: the lower SIF and the code overlay (images room)
        (workdir / "proj" / "images" / f"{name}-{d[7:]}.sif").touch()
        (workdir / "proj" / "images" / f"{name}-{d[7:]}.code.sqfs").touch()
    log = fake_slurm(tmp_path / "bin", **slurm_options)
    env = {"CI_COMMIT_SHA": "c0ffee" * 6, "MLOPS_TRIGGER_TOKEN": "", "CI_PROJECT_ID": "7", "CI_COMMIT_REF_NAME": "main"}
    return {
        "cfg": cfg,
        "manifest": manifest,
        "session": LocalSession(tmp_path / "bin"),
        "log": log,
        "env": env,
        "run": workdir / "proj" / "runs" / "p9",
        "bin": tmp_path / "bin",
    }


def sbatch_calls(log: Path) -> list[str]:
    """The sbatch calls of a fake_slurm log."""
    return [c for c in log.read_text().splitlines() if c.startswith("sbatch")] if log.exists() else []
