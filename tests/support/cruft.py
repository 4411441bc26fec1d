"""A copy of the template as its own git repo, and the git/cruft environment the update tests use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlops import hooks

from .render import TEMPLATE

MODE_LOG = "MLOPS_TEST_RENDER_MODE_LOG"


def run(argv, cwd, env, check=True, timeout=300):
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} -> {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def git_env(home: Path) -> dict:
    """Own HOME (no user cookiecutter/git config) and a fixed identity for the commits."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    env.pop(hooks.RENDER_MODE_ENV, None)
    return env


def copy_template(dest: Path, env: dict) -> Path:
    """The template's working tree (tracked and untracked, not ignored, no .git) as a fresh repo.

    Independent of the lead's commits: what is on disk now is "version 1".
    """
    _copy_working_tree(dest)
    _instrument(dest)
    run(["git", "init", "-q", "-b", "main"], dest, env)
    commit_all(dest, env, "version 1")
    return dest


def template_at(commit: str, dest: Path, env: dict) -> Path:
    """The template as it was at `commit` of its own history (e.g. the 0.2.0 release) as a fresh repo
    whose first commit is that version. Raises LookupError when the history does not hold `commit`."""
    if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=TEMPLATE, env=env).returncode:
        raise LookupError(f"commit {commit} is not in {TEMPLATE}'s git history (a shallow clone?)")
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=TEMPLATE, env=env, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    run(["git", "init", "-q", "-b", "main"], dest, env)
    commit_all(dest, env, f"version at {commit[:12]}")
    return dest


def move_to_working_tree(repo: Path, env: dict, message: str) -> str:
    """Commit the template's working tree (as copy_template takes it) as the next version of `repo`."""
    run(["git", "rm", "-rq", "."], repo, env)
    _copy_working_tree(repo)
    return commit_all(repo, env, message)


def _copy_working_tree(dest: Path) -> None:
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=TEMPLATE, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = TEMPLATE / rel
        if "__pycache__" in rel or ".pytest_cache" in rel or not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(src.read_bytes())
        (dest / rel).chmod(src.stat().st_mode)


def _instrument(dest: Path) -> None:
    """Instrument this copy's post-gen shim: record the mode the hook detects in the real cruft process."""
    shim = dest / "hooks" / "post_gen_project.py"
    text = shim.read_text()
    exit_line = "sys.exit(hooks.post_gen("
    assert exit_line in text, "the post-gen shim changed shape; update this test's instrumentation"
    probe = (
        "import os as _os\nif _os.environ.get('%s'):\n"  # noqa: UP031 - code in a string
        "    with open(_os.environ['%s'], 'a') as _log:\n"
        "        _log.write(hooks.render_mode(Path.cwd(), ANSWERS) + '\\n')\n" % (MODE_LOG, MODE_LOG)
    )
    shim.write_text(text.replace(exit_line, probe + exit_line, 1))


def commit_all(repo: Path, env: dict, message: str) -> str:
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-q", "-m", message], repo, env)
    return run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
