"""Read one run directory (or list the runs) on the login node; prints JSON. Sent on stdin to python3.

    read_state.py run RUN_DIR     {"exists", "attempts", "index", "records", "bad", "stages",
                                   "notify", "collected", "runner_alive", "progress"}
    read_state.py list RUNS_DIR   {"runs": [names of the directories in RUNS_DIR]}
Everything here is untrusted on the other side (mlops.cluster.state validates it); this script only
refuses to crash on a malformed file and reports it under "bad".
"""

import glob
import json
import os
import sys

BAD: list[str] = []


def load(path: str, default: object = None) -> object:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        BAD.append(f"{os.path.basename(path)}: {type(exc).__name__}")
        return default


def run(path: str) -> dict:
    stages: dict[str, int] = {}
    progress: dict[str, list[str]] = {}
    out: dict = {
        "exists": os.path.isdir(path),
        "attempts": load(path + "/state/jobs.json", []),
        "index": (load(path + "/envs/index.json") or {}),
        "stages": stages,
        "progress": progress,
        "records": {os.path.basename(p)[:-5]: load(p) for p in glob.glob(path + "/state/tasks/*.json")},
        "notify": load(path + "/state/notify.json"),
        "collected": load(path + "/state/collected.json"),
        "run": load(path + "/run.json"),
    }
    if isinstance(out["index"], dict):
        out["index"] = out["index"].get("configurations")
    for name in ("params", "data"):
        try:
            with open(path + "/state/" + name + ".rc") as fh:
                stages[name] = int(fh.read())
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            BAD.append(name + ".rc: not a number")
    for name in glob.glob(path + "/state/jobs/submitted-*.txt"):
        try:
            with open(name) as fh:
                progress[os.path.basename(name)[10:-4]] = fh.read(100000).split("\n")
        except OSError:
            pass
    pids = []
    for pid_file in glob.glob(path + "/state/runner-*.pid"):
        try:
            with open(pid_file) as fh:
                pids.append(int(fh.read().strip()))
        except (OSError, ValueError):
            BAD.append(os.path.basename(pid_file) + ": not a pid")
    if pids:
        out["runner_alive"] = False
        for pid in pids:
            try:
                os.kill(pid, 0)
                out["runner_alive"] = True
            except ProcessLookupError:
                pass
            except PermissionError:
                out["runner_alive"] = True
    out["bad"] = BAD
    return out


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "list":
        names = sorted(os.listdir(target)) if os.path.isdir(target) else []
        print(json.dumps({"runs": [n for n in names if os.path.isdir(os.path.join(target, n))]}))
    else:
        print(json.dumps(run(target)))
