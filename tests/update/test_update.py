"""Template updates with real cruft and a real git copy of the template.

The story a research group lives through: render version 1 with `cruft create`, commit, make the
edits a student makes, the template changes (a CI job, a new file, a file nobody touched), then
`cruft update`: the template's change lands, every student edit survives, no `.rej` files, the
project's own tests still pass and `cruft check` says up to date.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from mlops import __version__, hooks, template
from support.cruft import MODE_LOG, commit_all, copy_template, git_env, run
from support.render import TEMPLATE, make_venv, render

SLUG = "forecasting-experiments"


def cruft(args, cwd, env, check=True):
    return run([sys.executable, "-m", "cruft", *args], cwd, env, check=check)


def mlops(args, project, env, check=True):
    """The project's own mlops package (the version the project holds, not the template's)."""
    return run(
        [sys.executable, "-m", "mlops", *args], project, {**env, "PYTHONPATH": str(project / "src")}, check=check
    )


def tree(root: Path) -> dict[str, bytes]:
    skip = (".git/", ".venv/", "__pycache__", ".pytest_cache", "runs/")
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not any(s in str(p.relative_to(root)) + "/" for s in skip)
    }


def replace_once(path: Path, old: str, new: str):
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected one {old!r}; update this test to the template's new shape"
    path.write_text(text.replace(old, new))


# --- What a student does to the rendered project -------------------------------------------------

FEATURES = '''"""Own feature engineering (student)."""
import numpy as np


def detrend(x):
    """Remove each window's mean level: the model learns the shape, not the level."""
    return x - x.mean(axis=1, keepdims=True)
'''
OWN_MODEL = """# Own model (student): ridge on detrended windows, the level added back afterwards.
from features import detrend  # noqa: E402

_example_fit_predict = fit_predict


def fit_predict(x_train, y_train, x_test, run):
    level_train = x_train.mean(axis=1, keepdims=True)
    level_test = x_test.mean(axis=1, keepdims=True)
    return _example_fit_predict(detrend(x_train), y_train - level_train, detrend(x_test), run) + level_test


"""


def student_edits(project: Path):
    (project / "model" / "features.py").write_text(FEATURES)
    replace_once(project / "model" / "train.py", 'if __name__ == "__main__":', OWN_MODEL + 'if __name__ == "__main__":')
    doc = json.loads((project / "params" / "parameters.json").read_text())
    doc["grid"]["window"] = [24, 72]  # own parameters
    doc["fixed"]["seed"] = 7
    (project / "params" / "parameters.json").write_text(json.dumps(doc, indent=2) + "\n")
    toml = project / "mlops.toml"
    text, n = re.subn(r"(?m)^parallel = \d+", "parallel = 8", toml.read_text())
    assert n == 1, "mlops.toml has no `parallel =` line any more; update this test"
    toml.write_text(text)
    (project / "notes").mkdir()
    (project / "notes" / "experiments.md").write_text("# Experiments\n\n- 2026-11: detrending helps.\n")


STUDENT_FILES = {"model/features.py", "model/train.py", "params/parameters.json", "notes/experiments.md"}


# --- What the template maintainers change between versions --------------------------------------

NEW_FILE = "{{cookiecutter.project_slug}}/docs/cluster.md"


def template_changes(tpl: Path):
    slug_dir = tpl / "{{cookiecutter.project_slug}}"
    replace_once(slug_dir / ".gitlab" / "ci" / "template.yml", "timeout: 10m", "timeout: 15m")  # a CI job
    (tpl / NEW_FILE).parent.mkdir(exist_ok=True)
    (tpl / NEW_FILE).write_text("# Cluster notes\n\nLogin node: {{ cookiecutter.hpc_host }}\n")  # a new file
    with (slug_dir / ".dockerignore").open("a") as f:  # untouched file
        f.write("# ignore notebooks' checkpoints\n.ipynb_checkpoints/\n")
    replace_once(slug_dir / "src" / "mlops" / "__init__.py", f'__version__ = "{__version__}"', '__version__ = "99.0.0"')
    toml = slug_dir / "mlops.toml"  # a file the student edited, elsewhere
    toml.write_text("# Template 99.0.0: see the template's CHANGELOG.md.\n" + toml.read_text())


@pytest.fixture
def v1(tmp_path):
    env = git_env(tmp_path / "home")
    env[MODE_LOG] = str(tmp_path / "modes.log")
    tpl = copy_template(tmp_path / "tpl", env)
    return tmp_path, env, tpl


def modes(tmp_path) -> list[str]:
    log = tmp_path / "modes.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_update_applies_the_template_change_and_keeps_student_work(v1):
    tmp_path, env, tpl = v1
    cruft(["create", "-y", str(tpl), "--output-dir", str(tmp_path / "work")], tmp_path, env)
    assert modes(tmp_path) == ["non-interactive"]  # no terminal here: the hook never asks
    project = tmp_path / "work" / SLUG
    state = json.loads((project / ".cruft.json").read_text())
    assert state["template"] == str(tpl) and len(state["commit"]) == 40
    run(["git", "init", "-q", "-b", "main"], project, env)
    commit_all(project, env, "rendered from the template, version 1")

    # The hook's output is a pure function of the answers: re-rendering shows no difference.
    assert cruft(["diff", "--exit-code"], project, env, check=False).returncode == 0
    assert modes(tmp_path) == ["update"]
    assert mlops(["template", "check", "--strict"], project, env).returncode == template.UP_TO_DATE

    student_edits(project)
    commit_all(project, env, "own model and parameters")
    before = tree(project)

    template_changes(tpl)
    v2 = commit_all(tpl, env, "version 2")

    # The template has moved on: a warning (CI: allowed exit code), never a failure without --strict.
    checked = mlops(["template", "check", "--strict"], project, env, check=False)
    assert checked.returncode == template.OUT_OF_DATE, checked.stdout + checked.stderr
    assert "the template has moved on" in checked.stdout and "cruft update" in checked.stdout
    relaxed = mlops(["template", "check"], project, env)
    assert "the template has moved on" in relaxed.stdout
    assert cruft(["check"], project, env, check=False).returncode == 1

    started = time.monotonic()
    updated = cruft(["update", "-y"], project, env)
    print(f"cruft update took {time.monotonic() - started:.1f} s")
    assert "Good work" in updated.stdout, updated.stdout + updated.stderr
    assert modes(tmp_path) == ["update", "update"]  # old and new version, both in temp dirs

    after = tree(project)
    assert not [p for p in after if p.endswith((".rej", ".orig"))]
    assert not [p for p, b in after.items() if b"<<<<<<<" in b or b">>>>>>>" in b]
    for rel in STUDENT_FILES:  # every student edit survives unchanged
        assert after[rel] == before[rel], rel
    toml = after["mlops.toml"].decode()
    assert "parallel = 8" in toml and toml.startswith("# Template 99.0.0")  # both sides of a 3-way merge

    changed = run(["git", "status", "--porcelain"], project, env).stdout.splitlines()
    assert {line[3:] for line in changed} == {
        ".cruft.json",
        ".dockerignore",
        ".gitlab/ci/template.yml",
        "mlops.toml",
        "src/mlops/__init__.py",
        "docs/cluster.md",
    }, changed

    # Every file the student never touched is exactly what version 2 renders for these answers.
    fresh = cruft(["create", "-y", str(tpl), "--output-dir", str(tmp_path / "fresh")], tmp_path, env)
    assert fresh.returncode == 0
    reference = tree(tmp_path / "fresh" / SLUG)
    for rel, content in reference.items():
        if rel not in STUDENT_FILES | {"mlops.toml", ".cruft.json"}:
            assert after.get(rel) == content, rel
    assert "Login node: hpc.example.org" in after["docs/cluster.md"].decode()
    assert "timeout: 15m" in after[".gitlab/ci/template.yml"].decode()

    state = json.loads(after[".cruft.json"])
    assert state["commit"] == v2
    commit_all(project, env, "update from the template")
    assert cruft(["check"], project, env).returncode == 0
    assert "up to date" in mlops(["template", "check", "--strict"], project, env).stdout

    # The updated project (with the student's model) still passes its own test suite.
    venv = make_venv(project)
    suite = run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"],
        project,
        {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        check=False,
        timeout=900,
    )
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-2000:]


def test_check_cannot_tell_is_a_warning_not_a_failure(tmp_path):
    env = git_env(tmp_path / "home")
    project = render(tmp_path / "out")  # plain cookiecutter: no .cruft.json
    missing = mlops(["template", "check", "--strict"], project, env, check=False)
    assert missing.returncode == template.CANNOT_TELL
    assert ".cruft.json is missing" in missing.stdout and "cruft link" in missing.stdout
    assert mlops(["template", "check"], project, env).returncode == 0

    (project / ".cruft.json").write_text(
        json.dumps(
            {
                "template": str(tmp_path / "no-such-template"),
                "commit": "0" * 40,
                "checkout": None,
                "context": {"cookiecutter": {}},
                "directory": None,
            }
        )
    )
    unreachable = mlops(["template", "check", "--strict"], project, env, check=False)
    assert unreachable.returncode == template.CANNOT_TELL, unreachable.stdout + unreachable.stderr
    assert "cannot reach" in unreachable.stdout and "no-such-template" in unreachable.stdout


def test_answers_replay_renders_the_same_project(tmp_path):
    """`mlops template answers --replay` is a cookiecutter replay file that re-renders the project."""
    env = git_env(tmp_path / "home")
    project = render(
        tmp_path / "a",
        hpc_host="login.uni.example.edu",
        scheduler="none",
        container_runtime="podman",
        wandb_mode="disabled",
    )
    replay = tmp_path / "answers.json"
    replay.write_text(mlops(["template", "answers", "--replay"], project, env).stdout)
    from cookiecutter.main import cookiecutter

    config = tmp_path / "cc.yaml"
    config.write_text(f"cookiecutters_dir: {tmp_path / 'cc'}\nreplay_dir: {tmp_path / 'replay'}\n")
    again = Path(
        cookiecutter(str(TEMPLATE), replay=str(replay), output_dir=str(tmp_path / "b"), config_file=str(config))
    )
    assert tree(again) == tree(project)


@pytest.mark.parametrize("forced", hooks.RENDER_MODES)
def test_render_mode_can_be_forced(forced, tmp_path):
    assert hooks.render_mode(tmp_path, {}, environ={hooks.RENDER_MODE_ENV: forced}) == forced


def test_render_mode_detection(tmp_path):
    import tempfile

    class Tty:
        def isatty(self):
            return True

    cruft_ctx = {"_template": "x", "_commit": "c" * 40}
    cc_ctx = {"_template": "x", "_repo_dir": "/t", "_output_dir": "/o"}
    in_temp = Path(tempfile.mkdtemp()) / SLUG  # the shape cruft update/diff renders into
    try:
        assert hooks.render_mode(in_temp, cruft_ctx, environ={}, stdin=Tty()) == "update"
        assert hooks.render_mode(in_temp, cc_ctx, environ={}, stdin=Tty()) == "interactive"
        assert hooks.render_mode(tmp_path / SLUG, cruft_ctx, environ={}, stdin=Tty()) == "interactive"
        assert hooks.render_mode(tmp_path / SLUG, cruft_ctx, environ={"CI": "true"}, stdin=Tty()) == "non-interactive"
        with open(os.devnull) as devnull:
            assert hooks.render_mode(tmp_path / SLUG, cc_ctx, environ={}, stdin=devnull) == "non-interactive"
        with pytest.raises(ValueError, match=hooks.RENDER_MODE_ENV):
            hooks.render_mode(tmp_path, {}, environ={hooks.RENDER_MODE_ENV: "batch"})
    finally:
        in_temp.parent.rmdir()


def test_changelog_names_the_current_version_first():
    text = (TEMPLATE / "CHANGELOG.md").read_text()
    versions = re.findall(r"(?m)^## (\d+\.\d+\.\d+)\b", text)
    assert versions and versions[0] == __version__, (versions, __version__)
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))), reverse=True)


def test_ci_job_allows_exactly_the_warning_codes():
    """The template-check job must not blanket-allow failure: only the codes template.py defines."""
    import yaml

    spec, jobs = yaml.safe_load_all(
        (TEMPLATE / "{{cookiecutter.project_slug}}" / ".gitlab" / "ci" / "template.yml").read_text()
    )
    job = jobs["template-check"]
    assert job["allow_failure"] == {"exit_codes": [template.OUT_OF_DATE, template.CANNOT_TELL]}
    assert any("mlops template check --strict" in line for line in job["script"])
