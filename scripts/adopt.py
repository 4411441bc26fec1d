"""Bring this template's pipeline into a repository that already exists, without overwriting a file.

    python scripts/adopt.py /path/to/repo [--set hpc_host=login.uni.example.edu ...] [--answers FILE]

Renders the template into a temp dir with the repo's answers (defaults, the repo folder name as the
project name, an answers file such as `mlops template answers` or .cruft.json prints, `--set`),
then copies ONLY what the pipeline needs and the repo lacks:
  - .gitlab/ci/*.yml (the job files), .gitlab/ci-variables.yml, mlops.toml, .secrets.baseline;
  - the `mlops` tool: pyproject.toml + src/mlops/, or .mlops/ when the repo has its own
    pyproject.toml (then CI runs the tool from there: the `tool_dir` input of .gitlab/ci/tool.yml);
  - params/, data/, model/ and tests/, each only if the repo has no such folder.
Finally it prints what to add to the repo's .gitlab-ci.yml (stages, include:, variables) and
.gitignore; it never edits an existing file. A job-name clash or an occupied tool path stops it
before anything is written (exit 2). With --dry-run it only prints the plan.
When the template is a git checkout it also writes .cruft.json (template, commit, answers, and
`skip` for the repo's own files) so that `cruft update` and `mlops template check` work there too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "{{cookiecutter.project_slug}}" / "src"))
from mlops import hooks, options  # noqa: E402

TOOL_DIR_INPUT = "tool_dir"  # input of .gitlab/ci/tool.yml: the folder whose src/ holds the mlops package
TOOL_DIR = ".mlops"
ALWAYS = (".gitlab/ci", ".gitlab/ci-variables.yml", "mlops.toml", ".secrets.baseline")
FOLDERS = ("params", "data", "model", "tests")  # research code and its tests: whole folders or nothing
# Top-level keys of a GitLab CI file that are not jobs.
GLOBAL_KEYS = {
    "default",
    "include",
    "stages",
    "variables",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
    "spec",
}
GITLAB_DEFAULT_STAGES = [".pre", "build", "test", "deploy", ".post"]


class AdoptError(Exception):
    pass


def load_answers(repo: Path, answers_file: Path | None, sets: list[str]) -> dict:
    """Defaults < the repo's mlops.toml < an answers file < --set; derived defaults like cookiecutter."""
    answers: dict = {}
    if (repo / "mlops.toml").is_file():
        sys.path.insert(0, str(ROOT / "{{cookiecutter.project_slug}}" / "src"))
        from mlops import settings

        answers.update(settings.load(repo).answers())
    else:
        answers["project_name"] = repo.resolve().name
    if answers_file:
        doc = json.loads(answers_file.read_text())
        doc = doc.get("context", doc)  # .cruft.json
        doc = doc.get("cookiecutter", doc)  # replay file
        answers.update({k: str(v) for k, v in doc.items() if not k.startswith("_")})
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or name not in options.BY_NAME:
            raise AdoptError(f"--set {item!r}: use NAME=VALUE with NAME one of: {', '.join(options.BY_NAME)}")
        answers[name] = value
    return answers


def render(answers: dict, out: Path) -> Path:
    from cookiecutter.main import cookiecutter

    home = out / ".cc"
    home.mkdir(parents=True)
    (home / "config.yaml").write_text(f"cookiecutters_dir: {home / 't'}\nreplay_dir: {home / 'r'}\n")
    # No prompts and no credential checks: this render is a source of files, not the user's project.
    env_before = os.environ.get(hooks.RENDER_MODE_ENV)
    os.environ[hooks.RENDER_MODE_ENV] = "update"
    try:
        return Path(
            cookiecutter(
                str(ROOT),
                no_input=True,
                output_dir=str(out),
                extra_context=answers,
                config_file=str(home / "config.yaml"),
            )
        )
    finally:
        if env_before is None:
            os.environ.pop(hooks.RENDER_MODE_ENV, None)
        else:
            os.environ[hooks.RENDER_MODE_ENV] = env_before


def files_under(root: Path, rel: str) -> list[str]:
    path = root / rel
    if path.is_file():
        return [rel]
    return sorted(str(p.relative_to(root)) for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def ci_documents(path: Path) -> list[dict]:
    return [d for d in yaml.load_all(path.read_text(), Loader=_Loader) if isinstance(d, dict)]


def job_names(docs: list[dict]) -> set[str]:
    return {
        k for d in docs for k, v in d.items() if isinstance(v, dict) and k not in GLOBAL_KEYS and not k.startswith(".")
    }


def plan(repo: Path, rendered: Path) -> tuple[list[tuple[str, str]], list[str], bool]:
    """(copies as (source rel, target rel), notes, tool_in_subdir). Raises AdoptError on a clash."""
    copies, notes = [], []
    problems = []
    for rel in ALWAYS:
        for f in files_under(rendered, rel):
            if (repo / f).exists():
                if rel == ".gitlab/ci":
                    problems.append(f"{f} exists in the repo: move it, the template's job file has this name")
                else:
                    notes.append(f"kept your {f}")
            else:
                copies.append((f, f))
    tool_in_subdir = (repo / "pyproject.toml").exists()
    tool_files = files_under(rendered, "src/mlops") + ["pyproject.toml"]
    prefix = f"{TOOL_DIR}/" if tool_in_subdir else ""
    for f in tool_files:
        if (repo / prefix / f).exists():
            problems.append(f"{prefix}{f} exists in the repo: the mlops tool goes there; move yours")
        copies.append((f, prefix + f))
    if tool_in_subdir:
        notes.append(f"your pyproject.toml is kept; the mlops tool goes to {TOOL_DIR}/ (CI: input {TOOL_DIR_INPUT})")
    for folder in FOLDERS:
        if (repo / folder).exists():
            notes.append(f"kept your {folder}/ (the template's example {folder}/ was not copied)")
        else:
            copies += [(f, f) for f in files_under(rendered, folder)]
    # Jobs of the same name would be merged by GitLab into one broken job.
    theirs = repo / ".gitlab-ci.yml"
    if theirs.exists():
        ours = set()
        for f in files_under(rendered, ".gitlab/ci"):
            if f.endswith(".yml"):  # beside them: job.sh, mlops.sh and the lock files (not YAML)
                ours |= job_names(ci_documents(rendered / f))
        clash = sorted(ours & job_names(ci_documents(theirs)))
        if clash:
            problems.append(
                f".gitlab-ci.yml: job name(s) {', '.join(clash)} are also jobs of the template; "
                "rename yours (GitLab would merge the two definitions into one job)"
            )
    if problems:
        raise AdoptError("cannot adopt, nothing was written:\n  - " + "\n  - ".join(problems))
    return copies, notes, tool_in_subdir


def merged_stages(theirs: list[str], ours: list[str]) -> list[str]:
    """Ours in order, each of theirs placed after the stage that precedes it in their list."""
    out = [s for s in ours if s not in (".pre", ".post")]
    anchor = None
    for stage in theirs:
        if stage in (".pre", ".post"):
            continue
        if stage not in out:
            out.insert(out.index(anchor) + 1 if anchor else 0, stage)
        anchor = stage
    return out


def include_block(rendered_ci: str) -> str:
    """The rendered .gitlab-ci.yml's include: block, comments kept (it is the one source of these lines)."""
    lines = rendered_ci.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("include:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    return "\n".join(lines[start:end])


def with_tool_dir(block: str) -> str:
    """The include block with the tool job's `tool_dir` input set to TOOL_DIR (after its index_url line)."""
    lines = block.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("index_url:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, f"{indent}{TOOL_DIR_INPUT}: {TOOL_DIR}   # the folder whose src/ holds the mlops package")
    return "\n".join(lines)


def snippet(repo: Path, rendered: Path, tool_in_subdir: bool) -> str:
    rendered_ci = (rendered / ".gitlab-ci.yml").read_text()
    ours = yaml.safe_load(rendered_ci).get("stages", [])
    theirs_path = repo / ".gitlab-ci.yml"
    theirs = ci_documents(theirs_path)[0] if theirs_path.exists() and ci_documents(theirs_path) else {}
    their_stages = theirs.get("stages", GITLAB_DEFAULT_STAGES)
    head = "stages:   # replaces your stages: list (yours kept, in order)" if "stages" in theirs else "stages:"
    parts = [head + "".join(f"\n  - {s}" for s in merged_stages(their_stages, ours))]
    block = include_block(rendered_ci)
    if tool_in_subdir:  # an input, not a variable: nothing a pipeline variable can point elsewhere
        block = with_tool_dir(block)
    if "include" in theirs:
        block = block.replace("include:", "# append to your include: list", 1)
    parts.append(block)
    return "\n".join(parts) + "\n"


def gitignore_lines(repo: Path, rendered: Path) -> list[str]:
    have = set((repo / ".gitignore").read_text().splitlines()) if (repo / ".gitignore").exists() else set()
    return [
        line
        for line in (rendered / ".gitignore").read_text().splitlines()
        if line and not line.startswith("#") and line not in have
    ]


def cruft_state(repo: Path, rendered: Path, answers: dict, written: set[str]) -> dict | None:
    """A .cruft.json for the adopted repo, or None when the template is not a git checkout."""

    def git(*args):
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    url = git("remote", "get-url", "origin") or str(ROOT)
    rendered_files = set(files_under(rendered, "."))
    # The repo's own files that share a name with a template file: cruft update must leave them alone.
    skip = sorted(f for f in rendered_files if (repo / f).exists() and f not in written)
    context = dict(answers)
    context.update({"_template": url, "_commit": commit})
    return {
        "template": url,
        "commit": commit,
        "checkout": None,
        "context": {"cookiecutter": context},
        "directory": None,
        "skip": skip,
    }


def adopt(repo: Path, answers: dict, dry_run: bool = False, out=sys.stdout) -> int:
    repo = repo.resolve()
    if not repo.is_dir():
        raise AdoptError(f"{repo}: not a directory. Fix: give the path of the repository to adopt the pipeline into")
    full = {o.name: (o.choices[0] if o.choices else o.default) for o in options.OPTIONS}
    problems = options.validate(_derive({**full, **answers}))
    if problems:
        raise AdoptError(
            "these answers cannot be used (nothing was written):\n  - "
            + "\n  - ".join(map(str, problems))
            + "\n  set them with --set NAME=VALUE"
        )
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render(answers, Path(tmp))
        copies, notes, tool_in_subdir = plan(repo, rendered)
        rendered_answers = json.loads(json.dumps(_rendered_answers(rendered)))
        for _src, dst in copies:
            print(f"{'would add' if dry_run else 'add'} {dst}", file=out)
        if not dry_run:
            for src, dst in copies:
                (repo / dst).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(rendered / src, repo / dst)
            if tool_in_subdir:
                # The tool's own distribution name, so it cannot shadow the repo's package.
                pyproject = repo / TOOL_DIR / "pyproject.toml"
                slug = rendered_answers["project_slug"]
                pyproject.write_text(pyproject.read_text().replace(f'name = "{slug}"', f'name = "{slug}-mlops"', 1))
            state = (
                None
                if (repo / ".cruft.json").exists()
                else cruft_state(repo, rendered, rendered_answers, {dst for _, dst in copies})
            )
            if state:
                (repo / ".cruft.json").write_text(json.dumps(state, indent=2) + "\n")
                print("add .cruft.json (template link: `cruft update`, `mlops template check`)", file=out)
        for note in notes:
            print(f"note: {note}", file=out)
        print("\nAdd to your .gitlab-ci.yml:\n", file=out)
        print(snippet(repo, rendered, tool_in_subdir), file=out)
        missing = gitignore_lines(repo, rendered)
        if missing:
            print("Add to your .gitignore:\n\n" + "\n".join(missing) + "\n", file=out)
    return 0


def _derive(answers: dict) -> dict:
    a = dict(answers)
    a["project_slug"] = (
        answers.get("project_slug")
        if "{{" not in str(answers.get("project_slug", "{{"))
        else a["project_name"].lower().strip().replace(" ", "-").replace("_", "-")
    )
    if "{{" in str(a.get("hpc_workdir", "")):
        a["hpc_workdir"] = f"/home/{a['hpc_user']}/mlops"
    if "{{" in str(a.get("wandb_project", "")):
        a["wandb_project"] = a["project_slug"]
    if "{{" in str(a.get("cluster_name", "")):  # the template's Jinja default, as cookiecutter derives it
        from mlops.options.questions import cluster_name_of

        a["cluster_name"] = cluster_name_of(str(a.get("hpc_host", "")))
    return a


def _rendered_answers(rendered: Path) -> dict:
    sys.path.insert(0, str(ROOT / "{{cookiecutter.project_slug}}" / "src"))
    from mlops import settings

    return settings.load(rendered).answers()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="the existing repository (its files are never overwritten)")
    parser.add_argument("--answers", type=Path, help="JSON answers: flat, a cookiecutter replay file or .cruft.json")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="one template answer")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    args = parser.parse_args(argv)
    try:
        return adopt(args.repo, load_answers(args.repo, args.answers, args.set), args.dry_run)
    except AdoptError as exc:
        print(f"adopt: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
