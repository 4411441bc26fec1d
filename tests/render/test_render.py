"""Render the option matrix and inspect every variant's files."""

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from mlops import hooks, options, settings
from support.render import PROJECT_TEMPLATE, render, variant_id, variants

VERBATIM = options.cookiecutter_json()["_copy_without_render"]
# Files every project must have, whatever the options (a spot check beside the full file-set test).
KEY_FILES = {
    "README.md",
    "mlops.toml",
    "pyproject.toml",
    ".gitignore",
    ".dockerignore",
    "params/Dockerfile",
    "params/parameters.json",
    "params/parameters.schema.json",
    "data/Dockerfile",
    "data/prepare.py",
    "data/requirements.txt",
    "model/Dockerfile",
    "model/train.py",
    "model/requirements.txt",
    "src/mlops/cli.py",
    "src/mlops/params.py",
    "tests/test_params.py",
}


class _Loader(yaml.SafeLoader):
    """GitLab CI YAML: `!reference [job, key]` is a GitLab tag, not an error."""


_Loader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))


def files(root: Path) -> set[str]:
    """The project's files, without .git/ (the repository the post-gen hook makes, checked on its own)."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != ".git"}


def source_files() -> set[str]:
    return {f for f in files(PROJECT_TEMPLATE) if "__pycache__" not in f}


def is_verbatim(rel: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(rel, pattern) for pattern in VERBATIM)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    out = {}
    for variant in variants():
        out[variant_id(variant)] = (variant, render(tmp_path_factory.mktemp("v"), **variant))
    return out


def test_matrix_covers_every_choice():
    seen = {}
    for variant in variants():
        for name, value in variant.items():
            seen.setdefault(name, set()).add(value)
    for option in options.OPTIONS:
        if option.choices:
            missing = set(option.choices[1:]) - seen.get(option.name, set())
            assert not missing, f"{option.name}: {missing} never rendered"


def test_exact_file_set(matrix):
    expected = source_files() | set(hooks.GENERATED_FILES)
    for vid, (_, project) in matrix.items():
        assert files(project) == expected, vid
        assert KEY_FILES <= files(project)
        assert (project / ".git").is_dir(), vid  # with a first commit of exactly these files


def test_no_template_syntax_survives_and_verbatim_files_are_untouched(matrix):
    for vid, (_, project) in matrix.items():
        for rel in files(project):
            if rel in hooks.GENERATED_FILES:
                continue
            text = (project / rel).read_text()
            if is_verbatim(rel):
                assert text == (PROJECT_TEMPLATE / rel).read_text(), f"{vid}: {rel} changed"
            else:
                for token in ("{{", "{%", "{#", "cookiecutter."):
                    assert token not in text, f"{vid}: {rel} contains {token!r}"


def test_every_structured_file_parses(matrix):
    for _vid, (_, project) in matrix.items():
        for rel in files(project):
            path = project / rel
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix in (".yml", ".yaml"):
                list(yaml.load_all(path.read_text(), Loader=_Loader))
            elif path.suffix == ".toml":
                tomllib.loads(path.read_text())


def test_mlops_toml_holds_exactly_the_answers(matrix):
    for vid, (variant, project) in matrix.items():
        answers = settings.load(project).answers()  # raises if any key is bad
        for name, value in variant.items():
            assert answers[name] == str(value), (vid, name)


def test_framework_choice_changes_model_and_parameters(matrix):
    for _vid, (variant, project) in matrix.items():
        train = (project / "model" / "train.py").read_text()
        requirements = (project / "model" / "requirements.txt").read_text()
        if variant.get("ml_framework") == "pytorch":
            assert "import torch" in train and "torch==2.13.0" in requirements and "sklearn" not in train
        else:
            assert "from sklearn" in train and "scikit-learn==" in requirements and "torch" not in train
        compile(train, str(project / "model" / "train.py"), "exec")


def test_dockerfiles_take_the_base_image_as_an_argument_and_run_unprivileged(matrix):
    for vid, (variant, project) in matrix.items():
        version = variant.get("python_version", "3.11")
        for stage in ("params", "data", "model"):
            text = (project / stage / "Dockerfile").read_text()
            lines = text.splitlines()
            first = next(line for line in lines if line and not line.startswith("#"))
            assert first == f"ARG BASE_IMAGE=python:{version}-slim", (vid, stage)
            assert "FROM ${BASE_IMAGE}" in text and "USER 1000" in text
            assert "org.opencontainers.image.source" in text and "org.opencontainers.image.revision" in text
            assert lines[-1].startswith("ENTRYPOINT [")


def test_the_replay_file_holds_no_more_than_the_answers(tmp_path):
    project = render(tmp_path, hpc_user="alice")
    replay = json.loads(next((tmp_path / ".cookiecutter-home" / "replay").glob("*.json")).read_text())
    keys = {k for k in replay["cookiecutter"] if not k.startswith("_")}
    assert keys == {o.name for o in options.OPTIONS}
    assert project.name == "forecasting-experiments"
