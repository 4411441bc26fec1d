"""The first hour, up to the first command in the new project (issue 19): install lines right for every
variant, refused answers fixable without starting over (the real cookiecutter and cruft commands),
and a git repository with a first commit (so runs record a real commit)."""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import tomllib
from pathlib import Path

import pexpect
import pytest

from mlops import retry_answers, settings
from support.cruft import copy_template, git_env
from support.first_hour import first_hour_commands
from support.render import TEMPLATE, render

CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
FIRST_HOUR = [
    "python3 -m venv .venv && . .venv/bin/activate",
    'pip install -e ".[dev]" -r model/requirements.txt',
    "mlops params validate",
    "mlops run --local --jobs 2",
    "mlops runs",
    "pytest",
]


@pytest.mark.parametrize(
    "variant, cpu_index",
    [({}, False), ({"ml_framework": "pytorch"}, True), ({"ml_framework": "pytorch", "use_gpu": "yes"}, False)],
    ids=["scikit-learn", "pytorch-cpu", "pytorch-gpu"],
)
def test_install_lines_take_cpu_torch_exactly_when_no_gpu(tmp_path, variant, cpu_index):
    """The README installs from model/requirements.txt, which names PyTorch's CPU index when use_gpu is
    no: pip then takes the CPU build, not the CUDA one with its nvidia-* packages (several GB). The
    image installs from the same file (one place for the index)."""
    project = render(tmp_path, **variant)
    assert first_hour_commands((project / "README.md").read_text()) == FIRST_HOUR
    requirements = (project / "model" / "requirements.txt").read_text().splitlines()
    assert (CPU_INDEX in requirements) == cpu_index
    dockerfile = (project / "model" / "Dockerfile").read_text()
    assert "pip install -r /app/requirements.txt" in dockerfile and "download.pytorch.org" not in dockerfile
    assert ("CPU build of torch" in (project / "README.md").read_text()) == cpu_index


def test_the_dev_install_has_what_the_tests_and_the_plot_need(tmp_path):
    project = render(tmp_path)
    extras = tomllib.loads((project / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("matplotlib") for d in extras["dev"]) and any(d.startswith("pytest") for d in extras["dev"])


def test_the_render_is_a_git_repository_with_a_first_commit(tmp_path, capfd):
    project = render(tmp_path)
    said = capfd.readouterr().out
    assert "made a git repository with a first commit" in said
    log = subprocess.run(["git", "log", "--format=%s"], cwd=project, capture_output=True, text=True, check=True)
    assert log.stdout.splitlines() == ["Rendered from mlops-template"]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
    assert status.stdout == ""  # everything rendered, the generated files too, is in the commit


def test_a_render_inside_another_repository_says_why_it_is_not_one(tmp_path, capfd):
    subprocess.run(["git", "init", "-q", str(tmp_path / "outer")], check=True)
    project = render(tmp_path / "outer" / "sub")
    said = capfd.readouterr().out
    assert f"not made a git repository: {project} is inside the git repository {tmp_path / 'outer'}" in said
    assert not (project / ".git").exists()


def test_a_render_without_git_says_so(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # the hooks run with this interpreter's full path
    project = render(tmp_path / "out")
    assert "not made a git repository: git is not installed" in capfd.readouterr().out
    assert not (project / ".git").exists()


@pytest.fixture
def cli_env(tmp_path):
    """The real command-line programs, with their own HOME (no user config, replay or git identity)."""
    env = git_env(tmp_path / "home")
    return {**env, "NO_COLOR": "1", "TERM": "dumb"}


def refused(argv: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert "Traceback" not in said and "╭" not in said, said  # neither cookiecutter's nor cruft's (rich) traceback
    assert "hpc_port: '70000' is not a TCP port. Fix: use a number from 1 to 65535" in said
    return said


def kept(path: Path) -> dict:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    return json.loads(text[text.index("{") :])["default_context"]


def test_cookiecutter_refuses_once_and_keeps_the_good_answers(tmp_path, cli_env):
    work = tmp_path / "work"
    work.mkdir()
    said = refused(
        ["cookiecutter", "--no-input", str(TEMPLATE), "hpc_port=70000", "hpc_user=alice"],
        work,
        {**cli_env, "PWD": str(work)},
    )
    path = work / retry_answers.FILENAME
    answers = kept(path)
    assert answers["hpc_user"] == "alice" and "hpc_port" not in answers and "project_slug" not in answers
    assert sorted(p.name for p in work.iterdir()) == [retry_answers.FILENAME]  # no project folder left
    command = f"cookiecutter --config-file {path} {TEMPLATE}"
    assert command in said
    again = subprocess.run(
        [*shlex.split(command), "--no-input", "hpc_port=2222"], cwd=work, env=cli_env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout + again.stderr
    answers = settings.load(work / "forecasting-experiments").answers()
    assert answers["hpc_user"] == "alice" and answers["hpc_port"] == "2222"


def test_cruft_create_refuses_once_and_keeps_the_good_answers(tmp_path, cli_env):
    template = copy_template(tmp_path / "template", cli_env)
    work = tmp_path / "work"
    work.mkdir()
    extra = json.dumps({"hpc_port": "70000", "hpc_user": "alice"})
    said = refused(
        ["cruft", "create", "--no-input", "--extra-context", extra, str(template)], work, {**cli_env, "PWD": str(work)}
    )
    path = work / retry_answers.FILENAME
    assert kept(path)["hpc_user"] == "alice"
    command = f"cruft create --config-file {path} {template}"
    assert command in said
    again = subprocess.run(
        [*shlex.split(command), "--no-input", "--extra-context", '{"hpc_port": "2222"}'],
        cwd=work, env=cli_env, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    answers = settings.load(work / "forecasting-experiments").answers()
    assert answers["hpc_user"] == "alice" and answers["hpc_port"] == "2222"


def test_asked_again_enter_keeps_each_good_answer(tmp_path, cli_env):
    """The printed command in a terminal: every question comes back with the kept answer as its default."""
    work = tmp_path / "work"
    work.mkdir()
    refused(["cookiecutter", "--no-input", str(TEMPLATE), "hpc_port=70000", "hpc_user=alice", "author_name=Ada"],
            work, {**cli_env, "PWD": str(work)})  # fmt: skip
    child = pexpect.spawn(
        "cookiecutter", ["--config-file", str(work / retry_answers.FILENAME), str(TEMPLATE)],
        cwd=str(work), env={**cli_env, "COLUMNS": "1000"}, encoding="utf-8", timeout=120, dimensions=(50, 1000),
    )  # fmt: skip
    defaults = {}
    while True:
        found = child.expect([r"HPC SSH port \(([^()]*)\): ", r"\(([^()]*)\): ", pexpect.EOF])
        if found == 0:
            child.sendline("2222")
        elif found == 1:  # the question is the text after the last "[n/24] "
            question = re.split(r"\[\d+/\d+\] ", child.before)[-1].strip()
            defaults[question] = child.match.group(1)
            child.sendline("")
        else:
            break
    child.close()
    assert child.exitstatus == 0, child.before
    assert defaults.get("Your name") == "Ada" and defaults.get("Your user name on the cluster") == "alice", defaults
    answers = settings.load(work / "forecasting-experiments").answers()
    assert (answers["hpc_user"], answers["hpc_port"], answers["author_name"]) == ("alice", "2222", "Ada")


def test_cruft_update_renders_make_no_repository(tmp_path, monkeypatch):
    """cruft's temp renders (mode update) stay a pure function of the answers: no .git in them."""
    monkeypatch.setenv("MLOPS_RENDER_MODE", "update")
    project = render(tmp_path)
    assert not (project / ".git").exists()
