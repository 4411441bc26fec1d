"""Submission, cancel and collect of the cluster room over a local stand-in session (bash here) and
stand-in SLURM clients (tests/support/local_cluster.py): retry safety, a job sbatch created is always
recorded or cancelled (issue 18.4), which runs the cluster's own state says to collect (issue 17.1,
contract E), and how often one collect reads the state and removes the token (issue 20).
"""

from __future__ import annotations

import dataclasses
import io
import json
import stat
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlops import errors, params, settings
from mlops.cluster import runs, state, submit
from support.local_cluster import local_cluster, make_settings, sbatch_calls
from support.project import TriggerStandIn
from support.render import PROJECT_TEMPLATE, answers_for

CANARY = "glptt-CANARY" + "9d2c" * 5


@pytest.fixture
def cluster(tmp_path):
    c = local_cluster(tmp_path, fail_on_call=2)
    c["env"]["MLOPS_TRIGGER_TOKEN"] = CANARY
    return c


def queued(c) -> list[str]:
    """The jobs the SLURM stand-in created and nobody cancelled ("ID NAME")."""
    queue = c["bin"] / "queue"
    return queue.read_text().splitlines() if queue.exists() else []


def test_a_transient_sbatch_failure_then_a_retry_submits_the_run_once(cluster):
    c = cluster
    with pytest.raises(errors.WorkFailed, match="Socket timed out.*nothing of this attempt is left.*Retry the job"):
        submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    jobs = json.loads((c["run"] / "state" / "jobs.json").read_text())
    assert [a["status"] for a in jobs] == ["submitting"], "a refused submission is never recorded as submitted"
    assert queued(c) == [], "the params job sbatch created was cancelled"
    with pytest.raises(errors.BadInput, match="not final.*never submitted"):
        runs.collect_run(c["session"], c["cfg"], "p9", Path("unused"), require_final=True)
    # the GitLab "Retry" of the job: the same command again
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    assert record["status"] == "submitted" and record["params"] == "102" and record["notify"] == "105"
    assert [m["job"] for m in record["model"]] == ["104"]
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
    assert json.loads((c["run"] / "run.json").read_text())["cluster"] == "hpc", "the run keeps the cluster's name"


def test_an_info_line_of_a_site_plugin_before_the_job_id_is_not_a_failure(tmp_path):
    """sbatch --parsable of a site with a job_submit plugin: "sbatch: INFO: ..." then "ID;cluster".
    Before: every submission failed "answer was not a job id" and left the job queued, unrecorded."""
    c = local_cluster(tmp_path, info=True)
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"], out=io.StringIO())
    assert record["status"] == "submitted" and (record["params"], record["data"]) == ("100", "101")
    assert [m["job"] for m in record["model"]] == ["102"]
    assert len(queued(c)) == 3 and len(sbatch_calls(c["log"])) == 3


def test_a_job_created_without_an_id_in_the_answer_is_cancelled_and_the_retry_submits_once(tmp_path):
    """sbatch created the data job but its answer had no id: the attempt is cancelled by id AND by
    name (the data job too), SLURM lists nothing of it afterwards, and only then may the message
    say "submit again" (before: the data job stayed queued while the message said it was cancelled)."""
    c = local_cluster(tmp_path, no_id_on_call=2)
    with pytest.raises(errors.WorkFailed, match="no job id.*nothing of this attempt is left"):
        submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"], out=io.StringIO())
    assert queued(c) == [], "the data job whose id never came back is cancelled by its name"
    assert "scancel --user=" in c["log"].read_text() and "--name=proj-p9-1-data" in c["log"].read_text()
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"], out=io.StringIO())
    assert record["status"] == "submitted"
    assert sorted(line.split()[1] for line in queued(c)) == ["proj-p9-1-data", "proj-p9-1-model", "proj-p9-1-params"]


def test_a_submission_cut_between_two_sbatch_calls_is_cancelled_and_resubmitted(cluster):
    c = cluster
    (c["bin"] / "n").write_text("5")  # no refusal in this test
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    # as if the job was killed after two sbatch calls: the record says submitting, the progress file has ids
    jobs_file = c["run"] / "state" / "jobs.json"
    jobs_file.write_text(json.dumps([{**record, "status": "submitting", "model": [], "notify": None}]))
    (c["run"] / "state" / "jobs" / "submitted-1.txt").write_text("params 106\ndata 107\n")
    again = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"], out=io.StringIO())
    assert "scancel 106 107" in c["log"].read_text()
    assert again["status"] == "submitted" and again["params"] != record["params"]
    assert [a["status"] for a in json.loads(jobs_file.read_text())] == ["submitted"]


def test_a_cut_submission_whose_jobs_cannot_be_cancelled_is_not_submitted_twice(cluster):
    c = cluster
    (c["bin"] / "n").write_text("5")
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"])
    (c["run"] / "state" / "jobs.json").write_text(json.dumps([{**record, "status": "submitting"}]))
    (c["bin"] / "scancel").write_text("#!/bin/bash\nexit 1\n")  # a slurmctld that does not take the cancel
    n = len(sbatch_calls(c["log"]))
    with pytest.raises(errors.WorkFailed, match="SLURM still lists its job.*not submitting again"):
        submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"], out=io.StringIO())
    assert len(sbatch_calls(c["log"])) == n


def test_failed_only_never_reports_success_for_a_run_that_never_started(cluster):
    c = cluster
    (c["bin"] / "n").write_text("5")
    with pytest.raises(errors.BadInput, match="does not exist"):
        submit.submit(c["session"], c["cfg"], c["manifest"], "p9", failed_only=True, env=c["env"])
    (c["run"] / "state").mkdir(parents=True)  # a run directory whose submission was never recorded
    said = io.StringIO()
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", failed_only=True, env=c["env"], out=said)
    assert record["status"] == "submitted" and record["indices"] == [0, 1, 2]
    assert "never submitted; submitting the whole run" in said.getvalue()


FAKE_APPTAINER = r"""#!/bin/bash
# `apptainer run`: each stage writes only where its binds (mlops.images.runtime.binds) say
BINDS=()
TARGET=${!#}
while [ $# -gt 0 ]; do
  case "$1" in --env-file) ENV_FILE=$2; shift ;; --bind) BINDS+=("${2%%:*}"); shift ;; esac
  shift
done
case "$TARGET" in
  */params-*) cp "$(dirname "$0")/ids.txt" "$(dirname "$0")/index.json" "${BINDS[0]}/"
              while read -r id; do echo "CONFIG_ID=$id" > "${BINDS[0]}/$id.env"; done < "${BINDS[0]}/ids.txt" ;;
  */model-*) . "$ENV_FILE"; [ "${BINDS[1]##*/}" = "$CONFIG_ID" ] && echo '{"mae": 1}' > "${BINDS[1]}/metrics.json" ;;
esac
"""


def test_scheduler_none_runs_stages_tasks_and_the_notification_on_the_host(cluster):
    """runner.sh end to end on this machine with a stand-in `apptainer` (params writes the env files,
    data nothing, model a metrics.json), then the notification to a stand-in GitLab."""
    c = cluster
    ids = [x.config_id for x in params.expand(params.validate(c["cfg"].root / "params" / "parameters.json"))]
    (c["bin"] / "ids.txt").write_text("".join(f"{cid}\n" for cid in ids))
    (c["bin"] / "index.json").write_text(
        json.dumps({"configurations": [{"index": i, "config_id": cid} for i, cid in enumerate(ids)]})
    )
    (c["bin"] / "apptainer").write_text(FAKE_APPTAINER)
    (c["bin"] / "apptainer").chmod(0o755)
    c["run"].mkdir(parents=True)
    (c["run"] / "envs").mkdir()
    with TriggerStandIn() as gitlab:
        cfg = make_settings(
            c["cfg"].root,
            **{k: dataclasses.asdict(getattr(c["cfg"], k)) for k in ("cluster", "project")},
            scheduler={"kind": "none", "parallel": 2, "partition": ""},
        )
        cfg = dataclasses.replace(cfg, project=dataclasses.replace(cfg.project, gitlab_host=gitlab.host))
        record = submit.submit(c["session"], cfg, c["manifest"], "p9", env=c["env"], out=io.StringIO())
        assert record["kind"] == "none" and record["pid"] > 1
        deadline = time.monotonic() + 60
        while not (c["run"] / "state" / "notify.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        view = state.status(c["session"], cfg, "p9")
    log = (c["run"] / "state" / "runner-1.log").read_text()
    assert view["stages"] == {"params": "completed", "data": "completed"}, log
    assert {cid: s["status"] for cid, s in view["configs"].items()} == dict.fromkeys(ids, "completed"), log
    assert view["notify"]["status"] == "sent" and len(gitlab.requests) == 1
    assert gitlab.requests[0]["form"] == {"token": CANARY, "ref": "main"}


# ---------------------------------------------------------------- which runs to collect


def write_run(c, run_id: str, tasks: dict[str, tuple[str | None, str | None]], collected: bool = False) -> Path:
    """A submitted run on the stand-in cluster: per config id (record status, SLURM's state of its task)."""
    run = c["run"].parent / run_id
    for sub in ("state/tasks", "state/jobs", "envs", "results"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    cids = list(tasks)
    job = str(200 + len(list(c["run"].parent.iterdir())))
    attempt = {"attempt": 1, "kind": "slurm", "status": "submitted", "indices": list(range(len(cids))),
               "config_ids": cids, "model": [{"job": job, "offset": 0, "indices": list(range(len(cids)))}]}  # fmt: skip
    (run / "state" / "jobs.json").write_text(json.dumps([attempt]))
    (run / "run.json").write_text(json.dumps({"run_id": run_id, "pipeline": "5", "cluster": "hpc"}))
    (run / "envs" / "ids.txt").write_text("".join(f"{cid}\n" for cid in cids))
    configurations = [{"index": i, "config_id": cid, "parameters": {"window": i}} for i, cid in enumerate(cids)]
    (run / "envs" / "index.json").write_text(json.dumps({"configurations": configurations}))
    (run / "state" / "trigger-token").write_text(CANARY)
    lines = []
    for i, (cid, (status, slurm_state)) in enumerate(tasks.items()):
        if status:
            record = {"attempt": 1, "status": status, "exit_code": 0 if status == "completed" else 143}
            (run / "state" / "tasks" / f"{cid}.json").write_text(json.dumps(record))
            (run / "results" / cid).mkdir()
            (run / "results" / cid / "metrics.json").write_text('{"mae": 1.5}')
        if slurm_state:
            lines.append(f"{job}_{i}|{slurm_state}")
    with open(c["bin"] / "sacct.txt", "a") as fh:
        fh.write("".join(f"{line}\n" for line in lines))
    if collected:
        (run / "state" / "collected.json").write_text("{}")
    return run


def test_collect_all_final_fetches_the_final_uncollected_runs_and_reads_each_state_once(cluster, tmp_path):
    """A time limit (SLURM TIMEOUT, the record said cancelled) is final; a run with a requeued task
    (SLURM: pending again after it started) is not, and is neither collected nor marked; a collected
    run's state is not even read. Each collected run: its state read once, its token removed once."""
    c = cluster
    done = write_run(c, "p1", {"aaaaaaaaaa": ("completed", "COMPLETED"), "bbbbbbbbbb": ("cancelled", "TIMEOUT")})
    requeued = write_run(c, "p2", {"cccccccccc": ("completed", "COMPLETED"), "dddddddddd": ("cancelled", "PENDING")})
    write_run(c, "p3", {"eeeeeeeeee": ("completed", "COMPLETED")}, collected=True)
    session, log = c["session"], io.StringIO()
    out = tmp_path / "results"
    with pytest.raises(errors.BadInput, match="p2 is not final .*1 requeued"):
        runs.collect_run(session, c["cfg"], "p2", out, require_final=True, out=log)
    session.commands.clear()
    assert runs.collect_all_final(session, c["cfg"], out, out=log) == ["p1"]
    (cluster_dir,) = out.iterdir()  # results/<cluster>/ (contract E)
    assert (cluster_dir / "collected.txt").read_text() == "p1\n"
    assert (done / "state" / "collected.json").is_file() and not (done / "state" / "trigger-token").exists()
    assert not (requeued / "state" / "collected.json").exists() and (requeued / "state" / "trigger-token").exists()
    assert session.count(" -- run ") == 2, "the state of p1 and p2, once each (p3 is collected: not read)"
    assert session.count("trigger-token") == 1, "the token is removed once"
    summary = json.loads((cluster_dir / "p1" / "summary.json").read_text())
    assert {r["config_id"]: r["status"] for r in summary["configurations"]} == {
        "aaaaaaaaaa": "completed",
        "bbbbbbbbbb": "timeout",
    }
    assert "1 timeout: the task hit its time limit: raise `time`" in log.getvalue()
    failure = ET.parse(cluster_dir / "p1" / "junit.xml").getroot().find(".//failure")
    assert failure.get("type") == "timeout" and "raise `time`" in failure.get("message"), (
        "the fix in GitLab's Tests tab"
    )
    # partial results of the requeued run, by hand: its requeued task is skipped ("still requeued"), not failed
    partial = runs.collect_run(session, c["cfg"], "p2", tmp_path / "partial", out=io.StringIO())
    skipped = ET.parse(partial["run"] / "junit.xml").getroot().find(".//skipped")
    assert skipped.get("message") == "still requeued when collected" and partial["counts"]["requeued"] == 1
    assert not (requeued / "state" / "collected.json").exists()


def test_unattended_collect_skips_a_cluster_that_needs_a_typed_code():
    s = make_settings(cluster={"auth": "totp"})
    why = runs.unattended_skip(s, {})
    assert why and "HPC_TOTP_SECRET is not set" in why and "manual collect" in why
    assert runs.unattended_skip(s, {"HPC_TOTP_SECRET": CANARY}) is None
    assert runs.unattended_skip(make_settings(cluster={"auth": "key"}), {}) is None


class CountingSession:
    """A local session as a context manager that counts its logins (what `with Session.from_settings(s)` does)."""

    logins = 0

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

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
    (c["bin"] / "n").write_text("5")
    root = c["cfg"].root
    answers = answers_for({"hpc_workdir": str(c["run"].parents[2]), "container_runtime": "apptainer",
                           "project_slug": "proj"})  # fmt: skip
    (root / "mlops.toml").write_text(settings.fill_toml((PROJECT_TEMPLATE / "mlops.toml").read_text(), answers))
    (root / "images").mkdir()
    (root / "images" / "images.json").write_text(json.dumps(c["manifest"]))
    deployed = []
    monkeypatch.setattr(Session, "from_settings", classmethod(lambda cls, s: CountingSession(c["session"])))
    monkeypatch.setattr(images, "local_images", lambda s, path: {})  # the build's layout (none here)
    monkeypatch.setattr(images, "deploy", lambda session, s, path, images: deployed.append(session) or {"images": {}})
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


def test_one_collect_verb_loads_the_settings_once_logs_in_once_and_reads_each_run_once(cluster, monkeypatch, tmp_path):
    """`mlops collect --all-final --unattended` as the triggered pipeline runs it (issue 20 counted 2-4
    of each in 0.2): mlops.toml read once, one login, each uncollected run's state read once, each
    collected run's token removed once. Without HPC_TOTP_SECRET on a totp cluster: one line, exit 0,
    no login at all."""
    from mlops import cli
    from mlops.ssh.session import Session

    c = cluster
    write_run(c, "p1", {"aaaaaaaaaa": ("completed", "COMPLETED")})
    write_run(c, "p2", {"bbbbbbbbbb": ("completed", "COMPLETED"), "cccccccccc": ("cancelled", "TIMEOUT")})
    root = c["cfg"].root
    answers = answers_for({"hpc_workdir": str(c["run"].parents[2]), "container_runtime": "apptainer",
                           "project_slug": "proj", "hpc_auth": "totp"})  # fmt: skip
    (root / "mlops.toml").write_text(settings.fill_toml((PROJECT_TEMPLATE / "mlops.toml").read_text(), answers))
    loads, real_load = [], settings.load
    monkeypatch.setattr(settings, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    monkeypatch.setattr(Session, "from_settings", classmethod(lambda cls, s: CountingSession(c["session"])))
    monkeypatch.chdir(root)
    monkeypatch.delenv("HPC_TOTP_SECRET", raising=False)
    CountingSession.logins = 0
    out = tmp_path / "results"
    assert cli.main(["collect", "--all-final", "--unattended", "--out", str(out)]) == 0
    assert CountingSession.logins == 0 and not out.exists(), "skipped before any login"
    monkeypatch.setenv("HPC_TOTP_SECRET", CANARY)
    session = c["session"]
    session.commands.clear()
    loads.clear()
    assert cli.main(["collect", "--all-final", "--unattended", "--out", str(out)]) == 0
    assert len(loads) == 1 and CountingSession.logins == 1
    assert session.count(" -- run ") == 2 and session.count("trigger-token") == 2, session.commands
    assert sorted(p.name for p in out.glob("*/p*")) == ["p1", "p2"]
