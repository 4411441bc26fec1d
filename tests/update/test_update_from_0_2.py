"""`cruft update` of a project rendered from the 0.2 template (commit 477e52a, mlops.toml with one
[cluster] + [scheduler]) to this template (one [clusters.NAME] block per cluster), with real cruft and git.

A student tuned the scheduler keys and commented the file; the update moves the file to the new layout
and keeps every value (the 3-way merge), and `mlops config check` of the updated project passes. When
the student had edited a line the new layout removes (notify.partition), the merge conflicts: the
message names the way out the README gives, and following it ends in a valid, migrated file.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from support.cruft import commit_all, git_env, move_to_working_tree, run, template_at

V0_2 = "477e52a"  # the 0.2.0 template (README tier table of 2026-11-30)
SLUG = "forecasting-experiments"
ANSWERS = {"hpc_host": "login01.hpc.uni-example.de", "hpc_user": "ab1234"}  # cluster name: login01
TUNED = (("parallel = 4", "parallel = 8"), ('mem = "4G"', 'mem = "8G"  # the big data set'),
         ('time = "01:00:00"', 'time = "04:00:00"'), ('account = ""', 'account = "lab"'))  # fmt: skip
NOTIFY_0_2 = '[notify]\n# partition of the small notification job (empty = scheduler.partition)\npartition = ""'


def mlops(args, project, env, check=True):
    """The project's own mlops (the version the update brought)."""
    return run([sys.executable, "-m", "mlops", *args], project, {**env, "PYTHONPATH": str(project / "src")}, check)


@pytest.fixture
def rendered_0_2(tmp_path):
    """A project rendered by `cruft create` from the 0.2 template, committed; and the template repo."""
    env = git_env(tmp_path / "home")
    try:
        tpl = template_at(V0_2, tmp_path / "tpl", env)
    except LookupError as exc:
        pytest.skip(f"needs the template's own git history with the 0.2 release: {exc}")
    args = ["create", "-y", str(tpl), "--output-dir", str(tmp_path / "work"), "--extra-context", json.dumps(ANSWERS)]
    run([sys.executable, "-m", "cruft", *args], tmp_path, env)
    project = tmp_path / "work" / SLUG
    assert "[cluster]\n" in (project / "mlops.toml").read_text(), "not the 0.2 layout: is V0_2 the 0.2 template?"
    run(["git", "init", "-q", "-b", "main"], project, env)
    commit_all(project, env, "rendered from the 0.2 template")
    return project, tpl, env


def student_tunes(project: Path, env: dict, notify_partition: str | None = None) -> None:
    path = project / "mlops.toml"
    text = "# our group's settings (student)\n" + path.read_text()
    for old, new in TUNED:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    if notify_partition is not None:
        assert text.count(NOTIFY_0_2) == 1
        text = text.replace(NOTIFY_0_2, NOTIFY_0_2[:-2] + f'"{notify_partition}"')
    path.write_text(text)
    commit_all(project, env, "tuned for our cluster")


def update(project: Path, tpl: Path, env: dict):
    move_to_working_tree(tpl, env, "the template now")
    return run([sys.executable, "-m", "cruft", "update", "-y"], project, env, check=False)


def assert_migrated_with_the_students_values(project: Path, env: dict, notify_partition: str = "") -> None:
    text = (project / "mlops.toml").read_text()
    data = tomllib.loads(text)
    assert "cluster" not in data and "scheduler" not in data and "partition" not in data["notify"]
    assert data["clusters"]["default"] == "login01"
    block = data["clusters"]["login01"]
    assert (block["parallel"], block["mem"], block["time"], block["account"]) == (8, "8G", "04:00:00", "lab")
    assert (block["host"], block["user"], block["scheduler"]) == (ANSWERS["hpc_host"], "ab1234", "slurm")
    assert block["notify_partition"] == notify_partition
    assert text.startswith("# our group's settings (student)") and "# the big data set" in text
    checked = mlops(["config", "check"], project, env)
    assert "cluster login01 (default): ab1234@login01.hpc.uni-example.de:22, slurm" in checked.stdout
    assert "note:" not in checked.stdout, checked.stdout


def test_update_moves_mlops_toml_to_cluster_blocks_and_keeps_every_value(rendered_0_2):
    project, tpl, env = rendered_0_2
    student_tunes(project, env)
    assert mlops(["config", "check"], project, env).stdout.endswith("mlops.toml: ok\n")  # 0.2's own mlops
    updated = update(project, tpl, env)
    assert updated.returncode == 0 and "Good work" in updated.stdout, updated.stdout[-2000:] + updated.stderr[-2000:]
    assert not list(project.rglob("*.rej")) and b"<<<<<<<" not in (project / "mlops.toml").read_bytes()
    assert_migrated_with_the_students_values(project, env)
    state = json.loads((project / ".cruft.json").read_text())
    assert state["context"]["cookiecutter"]["cluster_name"] == "login01"
    assert '"login01"' in (project / ".gitlab-ci.yml").read_text()  # the pipeline's cluster: the same name


def test_a_conflicting_edit_is_named_and_the_readme_way_out_migrates_it(rendered_0_2):
    project, tpl, env = rendered_0_2
    student_tunes(project, env, notify_partition="short")  # a line the new layout removes
    updated = update(project, tpl, env)
    assert updated.returncode == 0, updated.stdout[-2000:] + updated.stderr[-2000:]
    checked = mlops(["config", "check"], project, env, check=False)
    assert checked.returncode == 2 and "merge conflict" in checked.stderr, checked.stderr
    assert "git checkout --ours mlops.toml && mlops config migrate" in checked.stderr
    run(["git", "checkout", "--ours", "--", "mlops.toml"], project, env)
    mlops(["config", "migrate"], project, env)
    assert_migrated_with_the_students_values(project, env, notify_partition="short")
