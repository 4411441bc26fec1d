"""Login nodes as they exist (issue 18.2-18.4), on this machine: the run's state is read with bash and
coreutils only (no python3 called, so a RHEL 8 python3.6 or none at all is fine), whatever a login
shell prints before a command (an echoing ~/.bashrc) is never taken for an answer, and a malformed,
linked, huge or hostile state file costs only itself. The same on the real local cluster:
tests/e2e/test_cluster_e2e.py::test_a_login_node_as_sites_have_them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest

from mlops.cluster import reader, records, runs, state, submit
from support.local_cluster import FAKE_PYTHON36, LocalSession, local_cluster

NOISE = b"Welcome to hpc! Your quota: 81% of 100 GB used\nmodule: loaded gcc/12\n42\nparams 999\n"


@pytest.fixture
def login_node(tmp_path):
    """The stand-in cluster with a `python3` that fails as 3.6 does, first on the PATH, and a login shell
    that prints before every command."""
    c = local_cluster(tmp_path)
    (c["bin"] / "python3").write_text(FAKE_PYTHON36)
    (c["bin"] / "python3").chmod(0o755)
    c["session"] = LocalSession(c["bin"], noise=NOISE)
    return c


def test_submit_status_collect_and_cancel_need_no_python_and_ignore_login_noise(login_node, tmp_path):
    c = login_node
    record = submit.submit(c["session"], c["cfg"], c["manifest"], "p9", env=c["env"], out=io.StringIO())
    assert record["status"] == "submitted" and record["params"] == "100"
    view = state.status(c["session"], c["cfg"], "p9")
    assert view["submitted"] and [a["attempt"] for a in view["attempts"]] == [1] and not view["problems"]
    assert view["cluster"] == "hpc" and len(view["configs"]) == 3
    assert runs.collect_all_final(c["session"], c["cfg"], tmp_path / "out", out=io.StringIO()) == []
    assert submit.cancel(c["session"], c["cfg"], "p9", out=io.StringIO()) == 3  # params, data, model
    assert not (c["bin"] / "python3.log").exists(), "python3 was called on the login node"


def test_the_old_state_reader_failed_on_such_a_login_node(login_node):
    """What 0.2 did (`python3 - run RUN_DIR` with read_state.py on stdin) on this login node: the
    python3.6 error. The reader that replaced it is above; this shows the stand-in is a faithful one."""
    env = {**os.environ, "PATH": f"{login_node['bin']}:{os.environ['PATH']}"}
    proc = subprocess.run(["python3", "-", "run", "/nonexistent"], input=b"", env=env, capture_output=True)
    assert proc.returncode == 1 and b"'type' object is not subscriptable" in proc.stderr


def test_a_hostile_or_broken_run_directory_costs_only_the_bad_files(login_node):
    """Links, a FIFO, a huge file, malformed and deeply nested JSON, a bad pid: each is reported or
    skipped, the good records are kept, nothing blocks (the FIFO is never opened)."""
    c = login_node
    run = c["run"]
    for sub in ("state/tasks", "state/jobs", "envs"):
        (run / sub).mkdir(parents=True)
    attempt = {"attempt": 1, "kind": "none", "status": "submitted", "indices": [0, 1],
               "model": [{"job": None, "offset": 0, "indices": [0, 1, 2, 3]}]}  # fmt: skip
    (run / "state" / "jobs.json").write_text(json.dumps([attempt]))
    (run / "envs" / "ids.txt").write_text("aaaaaaaaaa\nbbbbbbbbbb\n../../etc\ncccccccccc\n")
    tasks = run / "state" / "tasks"
    (tasks / "aaaaaaaaaa.json").write_text(json.dumps({"attempt": 1, "status": "completed", "exit_code": 0}))
    (tasks / "bbbbbbbbbb.json").write_text("{not json")
    (tasks / "cccccccccc.json").symlink_to("/etc/passwd")
    os.mkfifo(tasks / "dddddddddd.json")
    (tasks / "eeeeeeeeee.json").write_bytes(b" " * (200 << 10))  # over the per-record cap: not sent
    (tasks / "ffffffffff.json").write_text("[" * 20000 + "]" * 20000)  # deeper than json.loads goes
    (run / "state" / "runner-1.pid").write_text("not a pid\n")
    (run / "state" / "notify.json").write_text(json.dumps({"status": "sent", "http_status": 201, "error": ""}))
    raw = reader.read_run(c["session"], str(run))
    found, problems = records.clean(raw)
    assert found["exists"] and [a["attempt"] for a in found["attempts"]] == [1]
    assert found["index"] == [
        {"index": 0, "config_id": "aaaaaaaaaa"},
        {"index": 1, "config_id": "bbbbbbbbbb"},
        {"index": 3, "config_id": "cccccccccc"},
    ]
    assert set(found["records"]) == {"aaaaaaaaaa"} and found["notify"]["status"] == "sent"
    text = "\n".join(problems)
    for expected in ("bbbbbbbbbb.json: JSONDecodeError", "ffffffffff.json: RecursionError", "not a pid", "ids.txt"):
        assert expected in text, (expected, problems)
    assert found["runner_alive"] is None, "no readable pid: nobody can say"
    view = state.status(c["session"], c["cfg"], "p9")
    assert view["configs"]["aaaaaaaaaa"]["status"] == "completed"


def test_the_state_stream_is_capped_and_what_came_before_the_cap_is_kept(login_node, monkeypatch):
    c = login_node
    run = c["run"]
    (run / "state" / "tasks").mkdir(parents=True)
    (run / "state" / "jobs.json").write_text(json.dumps([{"attempt": 1, "kind": "none", "model": []}]))
    for i in range(3000):  # incompressible records: the stream passes a small cap
        (run / "state" / "tasks" / f"{i:010x}.json").write_text(
            json.dumps({"status": "completed", "x": os.urandom(64).hex()})
        )
    monkeypatch.setattr(reader, "MAX_STREAM_BYTES", 64 << 10)
    found, problems = records.clean(reader.read_run(c["session"], str(run)))
    assert [a["attempt"] for a in found["attempts"]] == [1], "the small files come first"
    assert 0 < len(found["records"]) < 3000
    assert any("passed its cap" in p for p in problems)


def test_listing_runs_skips_links_and_names_that_are_not_run_ids(login_node):
    c = login_node
    runs_dir = c["run"].parent
    for name in ("p1", "p2", "-rf", "a b"):
        (runs_dir / name / "state").mkdir(parents=True)
    (runs_dir / "p2" / "state" / "collected.json").write_text("{}")
    (runs_dir / "elsewhere").symlink_to(runs_dir / "p1")
    assert reader.list_runs(c["session"], str(runs_dir)) == [("p1", False), ("p2", True)]
    assert reader.list_runs(c["session"], str(runs_dir / "missing")) == []
    assert reader.read_run(c["session"], str(runs_dir / "missing")) == {"exists": False, "bad": []}
    assert reader.read_run(c["session"], str(runs_dir / "elsewhere")) == {"exists": False, "bad": []}
