"""`mlops run --local` as a researcher drives it (issue 19): watch it, stop it, go on, retry the failed,
debug one configuration; and the project in a folder named with a space and an umlaut (issue 18.8).

Most tests swap model/train.py for a small controllable script (no numpy, no W&B: milliseconds per
configuration). What a configuration does comes from its MODE parameter: fast (writes metrics),
slow (sleeps until model/all_fast exists, with a grandchild process), bad (exit 3 until model/fixed
exists), nometrics (exit 0 without metrics.json). Every start is appended to model/calls.txt.
Waits are bounded polls with generous limits; nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlops.results.read import NO_METRICS
from support.local_run import copy_of, env_for, mlops, only_run, set_parameters, summary

CONTROL_TRAIN = r"""
import json, os, pathlib, subprocess, sys, time
here = pathlib.Path(__file__).parent
res = pathlib.Path(os.environ["RESULT_DIR"])
res.mkdir(parents=True, exist_ok=True)
with (here / "calls.txt").open("a") as fh:
    fh.write(os.environ["CONFIG_ID"] + "\n")
mode = os.environ["MODE"]
time.sleep(float(os.environ.get("SLEEP", "0")))
if mode == "slow" and not (here / "all_fast").exists():
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (res / "pids").write_text(f"{os.getpid()} {grandchild.pid}")
    time.sleep(600)
if mode == "bad" and not (here / "fixed").exists():
    print("bad mode: failing on purpose")
    sys.exit(3)
if mode != "nometrics":
    (res / "metrics.json").write_text(json.dumps({"mae": float(os.environ["N"])}))
print("done", mode)
"""


def controlled(project: Path, modes: list[str], n: list[int] | None = None, **fixed) -> Path:
    (project / "model" / "train.py").write_text(CONTROL_TRAIN)
    set_parameters(project, {"fixed": fixed or {"sleep": 0}, "grid": {"mode": modes, "n": n or [1, 2]}})
    return project


def calls(project: Path) -> list[str]:
    path = project / "model" / "calls.txt"
    return path.read_text().split() if path.exists() else []


def wait_for(condition, what: str, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"waited {limit} s for {what}"
        time.sleep(0.2)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Output:
    """A Popen's merged output, read by a thread (so a test can wait for a line without blocking)."""

    def __init__(self, proc: subprocess.Popen):
        self.text = ""
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc):
        for line in proc.stdout:
            self.text += line


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_the_training_groups_writes_the_summary_and_resume_goes_on(project, signum, code):
    controlled(project, ["fast", "slow"])
    proc = mlops(project, "run", "--local", "--jobs", "4", "--run-id", "r1", popen=True)
    out = Output(proc)
    run = project / "runs" / "r1"
    slow_pids = lambda: list((run / "results").glob("*/pids"))  # noqa: E731
    wait_for(lambda: len(slow_pids()) == 2 and len(list((run / "results").glob("*/metrics.json"))) == 2, "2 ended")
    pids = [int(x) for p in slow_pids() for x in p.read_text().split()]
    assert all(alive(pid) for pid in pids)
    proc.send_signal(signum)
    assert proc.wait(timeout=600) == code, out.text
    out.thread.join(timeout=60)
    wait_for(lambda: not any(alive(pid) for pid in pids), "the training processes and their children to end", 60)
    assert "Traceback" not in out.text and "KeyboardInterrupt" not in out.text
    assert "Go on: mlops run --local --resume --run-id r1" in out.text
    counts = summary(run)["counts"]
    assert counts["completed"] == 2 and counts["cancelled"] == 2, counts
    assert "not completed or bad (2):" in out.text and "cancelled" in out.text
    started = calls(project)
    assert len(started) == 4

    (project / "model" / "all_fast").touch()
    resumed = mlops(project, "run", "--local", "--resume")  # the newest run: r1
    assert resumed.returncode == 0, resumed.stderr
    assert "run r1:" in resumed.stderr and "2 ended before, kept" in resumed.stderr
    again = calls(project)[4:]
    slow = {e["config_id"] for e in json.loads((run / "envs" / "index.json").read_text())["configurations"]
            if e["parameters"]["mode"] == "slow"}  # fmt: skip
    assert sorted(again) == sorted(slow)
    assert summary(run)["counts"]["completed"] == 4


def test_failed_only_runs_just_the_configurations_that_did_not_complete(project):
    controlled(project, ["fast", "bad"], n=[1])
    first = mlops(project, "run", "--local", "--jobs", "2", "--run-id", "f1")
    assert first.returncode == 1, first.stderr
    assert re.search(r"FAIL [0-9a-f]{10} after .*: exit 3; log: ", first.stderr), first.stderr
    assert "| bad mode: failing on purpose" in first.stderr
    (project / "model" / "fixed").touch()
    again = mlops(project, "run", "--local", "--failed-only", "--run-id", "f1")
    assert again.returncode == 0, again.stderr
    index = json.loads((project / "runs" / "f1" / "envs" / "index.json").read_text())["configurations"]
    bad = [e["config_id"] for e in index if e["parameters"]["mode"] == "bad"]
    assert calls(project)[2:] == bad
    assert summary(project / "runs" / "f1")["counts"]["completed"] == 2
    nothing = mlops(project, "run", "--local", "--failed-only")
    assert nothing.returncode == 0 and "nothing to run: all 2 configurations ended before" in nothing.stderr


def test_resume_refuses_a_run_whose_parameters_changed(project):
    controlled(project, ["fast"], n=[1])
    assert mlops(project, "run", "--local", "--run-id", "c1").returncode == 0
    controlled(project, ["fast"], n=[1, 2])
    refused = mlops(project, "run", "--local", "--resume", "--run-id", "c1")
    assert refused.returncode == 2
    assert "params/parameters.json changed since run c1 started" in refused.stderr and "Fix:" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = mlops(project, "run", "--local", "--resume", "--run-id", "nosuch")
    assert missing.returncode == 2 and "there is no run" in missing.stderr


def test_exit_0_without_metrics_names_the_fix(project):
    controlled(project, ["nometrics"], n=[1])
    result = mlops(project, "run", "--local")
    assert result.returncode == 1
    assert f": {NO_METRICS}; log: " in result.stderr  # the FAIL line
    (row,) = summary(only_run(project))["configurations"]
    assert row["status"] == "failed" and row["problems"] == [NO_METRICS]
    assert re.search(rf"failed +{re.escape(NO_METRICS)}", result.stderr)  # the end table's problems column


def test_progress_in_a_log_is_whole_lines(project):
    controlled(project, ["fast"], n=[1, 2, 3, 4])
    result = mlops(project, "run", "--local", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    assert re.search(r"^  \[4/4\] 4 completed, 0 failed, 0 running; \d+ s elapsed, done$", result.stderr, re.M)


def run_in_terminal(project: Path, *args: str, until=None, signum=signal.SIGINT) -> tuple[int, str]:
    """Run mlops with a pseudo-terminal as stdout/stderr; send `signum` once `until(output)` holds."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops", *args], cwd=project, env=env_for(project, {"TERM": "xterm"}),
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    text, sent, deadline = b"", False, time.monotonic() + 600
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side closed (the process ended)
            break
        if not chunk:
            break
        text += chunk
        if until and not sent and until(text.decode(errors="replace")):
            proc.send_signal(signum)
            sent = True
        assert time.monotonic() < deadline, text[-2000:]
    os.close(leader)
    return proc.wait(timeout=600), text.decode(errors="replace")


def test_progress_in_a_terminal_redraws_one_line(project):
    controlled(project, ["fast"], n=[1, 2, 3, 4])
    code, text = run_in_terminal(project, "run", "--local", "--jobs", "2")
    assert code == 0, text
    assert "\r\x1b[K  [4/4] 4 completed, 0 failed, 0 running" in text


def test_the_params_stage_shows_it_is_alive(project):
    """A huge grid keeps the params stage busy for minutes: its last log line is shown as it runs.
    (The stage here is a stand-in that prints what `mlops params expand` prints, then waits.)"""
    (project / "params" / "slow_expand.py").write_text(
        "import time\nprint('writing 50000 env files to envs', flush=True)\ntime.sleep(600)\n"
    )
    dockerfile = project / "params" / "Dockerfile"
    lines = dockerfile.read_text().splitlines()
    dockerfile.write_text("\n".join(lines[:-1] + ['ENTRYPOINT ["python", "slow_expand.py"]']) + "\n")
    code, text = run_in_terminal(project, "run", "--local", until=lambda t: "writing 50000 env files" in t)
    assert code == 130, text
    assert re.search(r"params running, \d+ s: writing 50000 env files to envs", text), text
    assert "Ctrl-C (SIGINT) during the params stage: nothing was trained" in text


def test_a_sweep_that_would_take_hours_gets_a_warning_with_an_estimate(project):
    controlled(project, ["fast"], n=list(range(2000)), sleep=2)
    proc = mlops(project, "run", "--local", "--jobs", "1", popen=True)
    out = Output(proc)
    wait_for(lambda: "warning:" in out.text, "the estimate")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=600) == 130
    out.thread.join(timeout=60)
    assert re.search(
        r"warning: this sweep would take about \d+\.\d h on this machine \(2000 configurations, the first took 2 s, "
        r"1 at a time\)\. Ctrl-C stops it",
        out.text,
    ), out.text


def test_one_configuration_in_the_foreground_with_a_changed_value(project):
    index = mlops(project, "params", "expand", "--out", str(project / "ids"))
    assert index.returncode == 0, index.stderr
    first = json.loads((project / "ids" / "index.json").read_text())["configurations"][0]
    result = mlops(project, "run", "--local", "--config", first["config_id"][:6], "--set", "window=48")
    assert result.returncode == 0, result.stderr
    assert re.search(r'^\{"mae": ', result.stdout, re.M)  # train.py's own output, straight through
    run = only_run(project)
    (row,) = summary(run)["configurations"]
    assert row["parameters"] == {**first["parameters"], "window": 48} and row["config_id"] != first["config_id"]
    assert json.loads((run / "run.json").read_text())["mode"] == "local-one"
    for args, expected in (
        (("--set", "windw=48"), "--set windw=48: use NAME=VALUE with a parameter of this configuration"),
        (("--set", "window=a"), "--set window=a: window is a number here"),
        (("--config", "zzzz"), "--config zzzz: no configuration of params/parameters.json has an id starting"),
    ):
        refused = mlops(project, "run", "--local", *args)
        assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    assert len(list((project / "runs").iterdir())) == 1  # nothing written for the refused ones


def test_a_project_under_a_space_and_an_umlaut_runs(template_project, tmp_path):
    project = copy_of(template_project, tmp_path / "My Projects" / "Übungen" / "forecasting")
    index = mlops(project, "params", "expand", "--out", str(tmp_path / "ids"))
    assert index.returncode == 0, index.stderr
    first = json.loads((tmp_path / "ids" / "index.json").read_text())["configurations"][:2]
    set_parameters(project, {"configurations": [e["parameters"] for e in first]})
    result = mlops(project, "run", "--local", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert summary(only_run(project))["counts"]["completed"] == 2
