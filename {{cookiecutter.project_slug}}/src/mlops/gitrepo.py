"""The rendered project as a git repository with a first commit, so that run.json records a real commit.

Called by the post-gen hook (not for cruft's update renders in temp dirs). It never fails the
render: when it cannot or should not make the repository, it says why in one line. It does not:
- when git is not installed;
- inside another repository (a monorepo, a checkout of the template): `git init` there would hide
  the project from the outer repository's history, so that choice is left to the user;
- when the folder is a repository already (cookiecutter -f over an existing project).
The branch is git's init.defaultBranch, or `main` when none is set (GitLab's default). The identity
is the user's git identity, or the template's author answers when git has none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

MESSAGE = "Rendered from mlops-template"
# Variables that would point git at another repository than the new project.
_GIT_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_CEILING_DIRECTORIES")


def first_commit(project_dir: Path, author_name: str, author_email: str) -> str:
    """Make `project_dir` a git repository holding everything rendered; returns the line to print."""
    project_dir = Path(project_dir)
    git = shutil.which("git")
    if git is None:
        return "not made a git repository: git is not installed. Install git, then: " + _by_hand()
    env = {k: v for k, v in os.environ.items() if k not in _GIT_VARS}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [git, *args], cwd=project_dir, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )

    if (project_dir / ".git").exists():
        return "already a git repository: nothing committed"
    outer = run("rev-parse", "--show-toplevel")
    if outer.returncode == 0:
        return (
            f"not made a git repository: {project_dir} is inside the git repository {outer.stdout.strip()}. "
            f"To give the project its own: cd {project_dir} && " + _by_hand()
        )
    branch = [] if run("config", "--get", "init.defaultBranch").stdout.strip() else ["-b", "main"]
    steps = [("init", "-q", *branch), ("add", "-A")]
    for step in steps:
        done = run(*step)
        if done.returncode != 0:
            return f"not made a git repository: git {step[0]} failed ({_last_line(done)}). " + _by_hand()
    commit = ("commit", "-q", "--no-verify", "-m", MESSAGE)
    done = run(*commit)
    if done.returncode != 0 and ("identity" in done.stderr or "email" in done.stderr):
        done = run("-c", f"user.name={author_name}", "-c", f"user.email={author_email}", *commit)
    if done.returncode != 0:
        return f"a git repository without a first commit: git commit failed ({_last_line(done)}). Commit by hand"
    sha = run("rev-parse", "--short=12", "HEAD").stdout.strip()
    return f"made a git repository with a first commit ({sha}): runs record the commit they ran"


def _by_hand() -> str:
    return f'git init && git add -A && git commit -m "{MESSAGE}"'


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1][:200] if lines else f"exit {done.returncode}"
