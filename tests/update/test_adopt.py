"""Adopting the pipeline into a repository that already exists (scripts/adopt.py).

A small existing repo with its own .gitlab-ci.yml and jobs adopts the pipeline: nothing of its own
is overwritten, the merged pipeline passes the GitLab schema check, gitlab-ci-local lists the old
and the new jobs, the old jobs still run, and the new validate jobs run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import pipeline as ps
from support.cruft import commit_all, copy_template, git_env, run

GCL = shutil.which("gitlab-ci-local")

LEGACY_CI = """\
# The group's pipeline before adopting the template.
stages:
  - lint
  - test

lint:
  stage: lint
  script:
    - python3 -m py_compile forecast.py

unit:
  stage: test
  script:
    - python3 forecast.py --selftest | grep -qx ok
"""
LEGACY = {
    ".gitlab-ci.yml": LEGACY_CI,
    "forecast.py": 'import sys\nprint("ok" if "--selftest" in sys.argv else "forecast")\n',
    "README.md": "# Legacy forecasting code\n",
    ".gitignore": "__pycache__/\n",
}


@pytest.fixture
def legacy(tmp_path):
    env = git_env(tmp_path / "home")
    tpl = copy_template(tmp_path / "tpl", env)
    repo = tmp_path / "legacy"
    repo.mkdir()
    for rel, text in LEGACY.items():
        (repo / rel).write_text(text)
    run(["git", "init", "-q", "-b", "main"], repo, env)
    run(["git", "remote", "add", "origin", "https://gitlab.example.com/group/legacy.git"], repo, env)
    commit_all(repo, env, "legacy")
    return tmp_path, env, tpl, repo


def adopt(tpl: Path, repo: Path, env: dict, *args, check=True):
    return run([sys.executable, str(tpl / "scripts" / "adopt.py"), str(repo), *args], repo, env, check=check)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git/" not in str(p.relative_to(root)) + "/"
    }


def printed_ci(stdout: str) -> str:
    start = stdout.index("Add to your .gitlab-ci.yml")
    body = stdout[start:].split("\n", 1)[1]
    return body.split("Add to your .gitignore")[0].strip("\n") + "\n"


def merge(existing: str, addition: str) -> str:
    """What a user does with the printed lines: their stages: list replaced, the rest appended."""
    kept, skipping = [], False
    for line in existing.splitlines():
        if line.startswith("stages:"):
            skipping = True
            continue
        if skipping and line.startswith((" ", "-")):
            continue
        skipping = False
        kept.append(line)
    return "\n".join(kept).rstrip() + "\n\n" + addition


def schema_check(repo: Path, tmp: Path):
    """check-jsonschema on every YAML document of the pipeline (spec: headers are separate documents)."""
    files = [repo / ".gitlab-ci.yml", *sorted((repo / ".gitlab" / "ci").glob("*.yml"))]
    docs = []
    for f in files:
        # Split the raw text (not via PyYAML: `!reference` tags must reach the schema tool's transform).
        for i, doc in enumerate(re.split(r"(?m)^---\s*$", f.read_text())):
            out = tmp / f"{f.stem}-{i}.yml"
            out.write_text(doc)
            docs.append(str(out))
    result = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci", *docs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(GCL is None, reason="gitlab-ci-local is not installed (.ci/run installs 4.73.0 with npm)")
def test_existing_repo_adopts_the_pipeline(legacy, request):
    tmp_path, env, tpl, repo = legacy
    before = tree(repo)
    adopted = adopt(tpl, repo, env, "--set", "hpc_host=login.uni.example.edu", "--set", "hpc_user=fc1234")
    after = tree(repo)
    for rel, content in before.items():  # not one of its files changed
        assert after[rel] == content, rel
    for rel in (
        "src/mlops/cli.py",
        "pyproject.toml",
        "mlops.toml",
        ".gitlab/ci/validate.yml",
        "params/parameters.json",
        "data/prepare.py",
        "model/train.py",
        ".cruft.json",
    ):
        assert rel in after, rel
    state = json.loads(after[".cruft.json"])
    assert state["template"] == str(tpl) and state["context"]["cookiecutter"]["hpc_host"] == "login.uni.example.edu"
    assert "README.md" in state["skip"] and ".gitignore" in state["skip"]  # cruft update leaves them alone

    addition = printed_ci(adopted.stdout)
    assert "include:" in addition and "- local: .gitlab/ci/validate.yml" in addition
    (repo / ".gitlab-ci.yml").write_text(merge(LEGACY_CI, addition))
    # the tool job downloads the locked wheels from an index on 127.0.0.1 (PyPI's files, hash-checked)
    index = ps.LocalIndex(ps.locked_wheels(repo, tmp_path / "cache")).__enter__()
    request.addfinalizer(lambda: index.__exit__(None, None, None))
    ps.use_index(repo, index.url)
    with (repo / ".gitignore").open("a") as f:
        f.write(adopted.stdout.split("Add to your .gitignore:")[1].strip() + "\n")
    commit_all(repo, env, "adopt the mlops pipeline")
    schema_check(repo, tmp_path)

    listed = run([GCL, "--list-json"], repo, env, timeout=180)
    jobs = {job["name"]: job for job in json.loads(listed.stdout)}
    assert {"lint", "unit"} <= set(jobs), sorted(jobs)  # the old jobs
    assert {"tool", "params", "config", "tests", "template-check", "build", "deploy-login"} <= set(jobs), sorted(jobs)
    assert jobs["lint"]["stage"] == "lint" and jobs["params"]["stage"] == "validate"

    gcl = [GCL, "--force-shell-executor", "--shell-isolation"]
    old = run([*gcl, "lint", "unit"], repo, env, check=False, timeout=300)
    assert old.returncode == 0, old.stdout[-3000:] + old.stderr[-2000:]
    started = time.monotonic()
    # The validate stage of the new jobs, except `tests` (the project's own suite: minutes of local
    # sweeps, run in the project tier and after an update in test_update.py).
    new = run([*gcl, "tool", "params", "config", "template-check"], repo, env, check=False, timeout=900)
    print(f"validate jobs in the adopted repo: {time.monotonic() - started:.1f} s")
    assert new.returncode == 0, new.stdout[-4000:] + new.stderr[-2000:]
    assert "configurations" in new.stdout  # mlops params validate
    assert "mlops.toml: ok" in new.stdout  # mlops config check
    assert "up to date with template" in new.stdout  # mlops template check


def test_clashing_job_names_stop_before_anything_is_written(legacy):
    tmp_path, env, tpl, repo = legacy
    (repo / ".gitlab-ci.yml").write_text(LEGACY_CI + "\nbuild:\n  stage: test\n  script:\n    - make\n")
    commit_all(repo, env, "a build job")
    before = tree(repo)
    result = adopt(tpl, repo, env, check=False)
    assert result.returncode == 2
    assert "build" in result.stderr and "rename yours" in result.stderr and "nothing was written" in result.stderr
    assert tree(repo) == before


def test_repo_with_its_own_package_gets_the_tool_beside_it(legacy):
    tmp_path, env, tpl, repo = legacy
    (repo / "pyproject.toml").write_text('[project]\nname = "legacy"\nversion = "1.0"\n')
    (repo / "model").mkdir()
    (repo / "model" / "net.py").write_text("# the group's own model\n")
    commit_all(repo, env, "own package and model")
    before = tree(repo)
    result = adopt(tpl, repo, env)
    after = tree(repo)
    for rel, content in before.items():
        assert after[rel] == content, rel
    assert ".mlops/src/mlops/cli.py" in after and "src/mlops/cli.py" not in after
    assert b'name = "legacy-mlops"' in after[".mlops/pyproject.toml"]  # cannot shadow the repo's "legacy"
    assert "model/train.py" not in after and "kept your model/" in result.stdout  # whole folder or nothing
    assert "tool_dir: .mlops" in result.stdout and "MLOPS_TOOL_DIR" not in result.stdout
    # The tool installs from there, as the CI jobs of the project's own code do (pip install "<tool_dir>[cluster]").
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, env)
    run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-build-isolation", str(repo / ".mlops")],
        tmp_path,
        env,
        timeout=300,
    )
    # Before the printed lines are in .gitlab-ci.yml the check names what is missing; after, it passes.
    early = run([str(venv / "bin" / "mlops"), "config", "check"], repo, env, check=False)
    assert early.returncode == 2 and "cluster block is missing" in early.stderr, early.stderr
    (repo / ".gitlab-ci.yml").write_text(merge(LEGACY_CI, printed_ci(result.stdout)))
    checked = run([str(venv / "bin" / "mlops"), "config", "check"], repo, env)
    assert "mlops.toml: ok" in checked.stdout


def test_bad_answer_names_the_field_and_writes_nothing(legacy):
    tmp_path, env, tpl, repo = legacy
    before = tree(repo)
    result = adopt(tpl, repo, env, "--set", "hpc_port=70000", check=False)
    assert result.returncode == 2 and "hpc_port" in result.stderr and "Fix:" in result.stderr
    assert tree(repo) == before
