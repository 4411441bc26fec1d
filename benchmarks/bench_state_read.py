"""Reading a run's state from the cluster: what one `mlops status` costs for a large sweep.

    python benchmarks/bench_state_read.py [--configs 10000] [--repeat 3] [--smoke]

A run directory with N task records (as shell/task.sh writes them), envs/ids.txt and state/jobs.json
is written to a temp dir; then mlops.cluster.reader.read_run + records.clean read it through a
local bash (the "login node": shell/read_state.sh, bash + coreutils + find + tar + gzip, no Python
there), as the SSH session would. Printed: seconds (best of --repeat) and the bytes the login node
sends back (what crosses the SSH connection). Not a test: nothing is asserted; --smoke reads 200.

The 0.2 reader for comparison (python3 on the login node, JSON of every file; needs python3 >= 3.9):
    git show 157e50c:'{{cookiecutter.project_slug}}/src/mlops/cluster/shell/read_state.py' > /tmp/old.py
    python benchmarks/bench_state_read.py --old /tmp/old.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "{{cookiecutter.project_slug}}" / "src"))

from _machine import describe  # noqa: E402

from mlops.cluster import reader, records  # noqa: E402


class LocalLogin:
    """mlops.remote.Remote's run() on this machine (bash here); counts the bytes of each answer."""

    sent = 0

    def run(self, command, stdin=None, timeout=600, check=True, stdout=None):
        proc = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, timeout=timeout)
        self.sent = len(proc.stdout)
        if stdout is not None:
            stdout.write(proc.stdout)
            return proc.returncode, "", proc.stderr.decode()
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def make_run(run: Path, n: int) -> None:
    for sub in ("state/tasks", "state/jobs", "envs"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    cids = [f"{i:010x}" for i in range(n)]
    (run / "envs/ids.txt").write_text("".join(c + "\n" for c in cids))
    configurations = [{"index": i, "config_id": c, "parameters": {"window": i}} for i, c in enumerate(cids)]
    (run / "envs/index.json").write_text(json.dumps({"configurations": configurations}))
    attempt = {"attempt": 1, "kind": "slurm", "status": "submitted", "indices": list(range(n)), "config_ids": cids,
               "model": [{"job": "20", "offset": 0, "indices": list(range(n))}]}  # fmt: skip
    (run / "state/jobs.json").write_text(json.dumps([attempt]))
    (run / "run.json").write_text(json.dumps({"run_id": "p1", "commit": "c" * 40, "pipeline": "5"}))
    for i, c in enumerate(cids):
        record = {"attempt": 1, "config_id": c, "job": f"20_{i}", "restarts": 0, "started": 1.5e9,
                  "status": "completed", "duration_s": 12.345, "exit_code": 0}  # fmt: skip
        (run / f"state/tasks/{c}.json").write_text(json.dumps(record))


def best(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--old", type=Path, default=None, help="the 0.2 read_state.py, to compare (see above)")
    ap.add_argument("--smoke", action="store_true", help="200 configurations, one repeat")
    args = ap.parse_args()
    n, repeat = (200, 1) if args.smoke else (args.configs, args.repeat)
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        make_run(run, n)
        login = LocalLogin()
        found: dict = {}

        def new() -> None:
            found["state"], found["problems"] = records.clean(reader.read_run(login, str(run)))

        seconds = best(repeat, new)
        print(f"state read of {n:,} task records (bash+tar+gzip on the login node): {seconds:.2f} s, "
              f"{login.sent:,} bytes sent, {len(found['state']['records']):,} records, "
              f"{len(found['problems'])} problems")  # fmt: skip
        if args.old:
            script = args.old.read_bytes()
            old_sent = {}

            def old() -> None:
                proc = subprocess.run(["python3", "-", "run", str(run)], input=script, capture_output=True, check=True)
                old_sent["bytes"] = len(proc.stdout)

            old_seconds = best(repeat, old)
            print(f"0.2 reader (python3 on the login node): {old_seconds:.2f} s, {old_sent['bytes']:,} bytes sent; "
                  f"bytes ratio old/new {old_sent['bytes'] / login.sent:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
