"""What the template's hooks do, importable so that tests and users can run it again.

The hooks in the template repo are three-line shims: cookiecutter renders them to temp files
that cannot import their neighbours, so they add this package to sys.path and call in here.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from . import options

# Files the post-gen hook writes (not in the template source); the render tests expect exactly these.
GENERATED_FILES: tuple[str, ...] = (".gitlab/ci-variables.yml",)


# How the hook was started, which decides what it may do:
#   interactive      a person ran cookiecutter/cruft create in a terminal: it may ask (hidden prompts)
#   non-interactive  no terminal, or CI: never ask, skip what needs a person, still validate
#   update           cruft update/diff re-rendering old and new template versions in temp dirs:
#                    no prompts, no credential checks, output a pure function of the answers
RENDER_MODES = ("interactive", "non-interactive", "update")
RENDER_MODE_ENV = "MLOPS_RENDER_MODE"  # forces a mode (tests, wrappers); unset = detect
# cruft renders both versions with cookiecutter's generate_files into a fresh
# tempfile.TemporaryDirectory(): <tempdir>/tmpXXXXXXXX/<slug> (cruft 2.x, _commands/utils/generate.py).
_PY_TEMPDIR = re.compile(r"^tmp[a-z0-9_]{8}$")


def render_mode(
    project_dir: Path, answers: dict, environ: Mapping[str, str] | None = None, stdin: TextIO | None = None
) -> str:
    """interactive, non-interactive or update (see RENDER_MODES) for this run of a hook.

    cruft puts `_commit` into the context and no `_repo_dir` (plain cookiecutter sets `_repo_dir`);
    `cruft create` renders into the user's directory, update and diff into a Python temp dir.
    Mistaking a create in such a dir for an update only skips prompts, the safe direction.
    """
    environ = os.environ if environ is None else environ
    stdin = sys.stdin if stdin is None else stdin
    forced = environ.get(RENDER_MODE_ENV, "")
    if forced:
        if forced not in RENDER_MODES:
            raise ValueError(f"{RENDER_MODE_ENV}={forced!r}: use one of {', '.join(RENDER_MODES)}")
        return forced
    parent = Path(project_dir).resolve().parent
    by_cruft = "_commit" in answers and "_repo_dir" not in answers
    if by_cruft and _PY_TEMPDIR.match(parent.name) and parent.parent == Path(tempfile.gettempdir()).resolve():
        return "update"
    try:
        tty = stdin is not None and stdin.isatty()
    except (ValueError, OSError):  # closed or unusual stdin
        tty = False
    return "interactive" if tty and not environ.get("CI") else "non-interactive"


def _report(problems: list[options.Problem], out=sys.stderr) -> int:
    if not problems:
        return 0
    print("mlops-template: these answers cannot be used (nothing was generated):", file=out)
    for problem in problems:
        print(f"  - {problem}", file=out)
    return 1


def pre_gen(answers: dict, project_dir: Path | None = None) -> int:
    """Before rendering: validate the answers; non-zero makes cookiecutter remove the output.

    Refused answers: one message, the good ones kept for the next try (mlops.retry_answers).
    """
    from . import retry_answers

    problems = options.validate(answers)
    project_dir = Path.cwd() if project_dir is None else Path(project_dir)
    if problems and render_mode(project_dir, answers) == "update":
        return _report(problems)  # cruft update: the answers of .cruft.json, nobody to ask again
    if problems:
        retry_answers.refuse(problems, answers, project_dir)
        retry_answers.stop_parent_cli(project_dir)
        return 1
    return _need_tomlkit()


def _need_tomlkit() -> int:
    """The post-gen hook writes mlops.toml and pyproject.toml with tomlkit: say so before anything is written."""
    try:
        import tomlkit  # noqa: F401
    except ImportError:
        print(
            "mlops-template: the Python that runs cookiecutter/cruft needs tomlkit (it writes mlops.toml and "
            "pyproject.toml). Fix: pip install tomlkit, then render again (nothing was generated)",
            file=sys.stderr,
        )
        return 1
    return 0


def write_toml_files(project_dir: Path, answers: dict) -> None:
    """Set the answers into the rendered mlops.toml and pyproject.toml with tomlkit (comments kept).

    The template's copies hold only placeholders: no answer is ever pasted into TOML text by Jinja.
    """
    import tomlkit

    from . import settings

    toml = Path(project_dir) / settings.FILENAME
    toml.write_text(settings.fill_toml(toml.read_text(encoding="utf-8"), answers), encoding="utf-8")
    path = Path(project_dir) / "pyproject.toml"
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    project: Any = doc["project"]
    project["name"] = answers["project_slug"]
    project["description"] = answers["description"]
    author = tomlkit.inline_table()
    author.update({"name": answers["author_name"], "email": answers["author_email"]})
    authors = tomlkit.array()
    authors.append(author)
    project["authors"] = authors
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")


def _no_input_requested(pid: int | None = None) -> bool:
    """True when the cookiecutter process that runs this hook was given --no-input or --replay.

    Hooks run as a child process of cookiecutter and cannot see its options, so read its command line
    (Linux /proc; elsewhere the TTY test of render_mode decides alone).
    """
    try:
        argv = Path(f"/proc/{pid or os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a in (b"--no-input", b"--replay") or a.startswith(b"--replay-file") for a in argv)


def post_gen(project_dir: Path, answers: dict) -> int:
    """After rendering: validate again (cruft renders without a pre-gen template path), write the variable
    manifest, then check this machine's credentials (never fails the render unless strict mode is on)."""
    from . import settings
    from .credentials import checks
    from .errors import MlopsError
    from .variables import manifest

    refused = options.validate(answers)
    if refused and render_mode(Path(project_dir), answers) != "update":
        from . import retry_answers

        return retry_answers.refuse(refused, answers, Path(project_dir))
    rc = _report(refused) or _need_tomlkit()
    if rc:
        return rc
    write_toml_files(Path(project_dir), answers)
    s = settings.load(Path(project_dir))
    manifest.write_manifest(s)
    mode = render_mode(Path(project_dir), answers)
    if mode == "update":
        return 0  # cruft re-renders in temp dirs: the output is a function of the answers alone
    _git_first_commit(Path(project_dir), answers)
    interactive = mode == "interactive" and not _no_input_requested()
    try:
        checks.hook_report(s, interactive=interactive)
    except MlopsError as exc:  # strict mode: the hook's exit status is cookiecutter's only signal
        print(f"mlops-template: {exc}", file=sys.stderr)
        return 1
    return 0


def _git_first_commit(project_dir: Path, answers: dict) -> None:
    """Make the project a git repository with a first commit (mlops.gitrepo), and say so in one line."""
    from . import gitrepo

    said = gitrepo.first_commit(project_dir, answers["author_name"], answers["author_email"])
    if "_commit" in answers and "_repo_dir" not in answers and said.startswith("made"):
        said += "; cruft writes .cruft.json after it: git add .cruft.json && git commit -m 'Link to the template'"
    print(f"mlops-template: {said}")
