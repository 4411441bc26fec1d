"""Unit tests of the option rules (mlops.options) and of the generated files that depend on them."""

import subprocess
import sys

import pytest

from mlops import options
from support.render import DEFAULTS, TEMPLATE, answers_for


def problems(**changes):
    return [str(p) for p in options.validate(answers_for(changes))]


def test_defaults_are_valid():
    assert problems() == []


def test_cookiecutter_json_and_readme_table_are_generated_from_options():
    result = subprocess.run(
        [sys.executable, "scripts/sync_options.py", "--check"], cwd=TEMPLATE, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_option_has_a_prompt_and_help():
    for option in options.OPTIONS:
        assert option.prompt and option.help, option.name
    assert set(options.cookiecutter_json()["__prompts__"]) == {o.name for o in options.OPTIONS}


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"project_slug": "My Project"},
            "project_slug: 'My Project' is not a valid slug. Fix: use at most 50 lowercase",
        ),
        ({"project_slug": "a--b"}, "project_slug: 'a--b' is not a valid slug"),
        ({"hpc_port": "70000"}, "hpc_port: '70000' is not a TCP port. Fix: use a number from 1 to 65535"),
        ({"hpc_port": "ssh"}, "hpc_port: 'ssh' is not a TCP port"),
        (
            {"hpc_host": "https://hpc.example.org"},
            "hpc_host: 'https://hpc.example.org' contains a URL scheme. "
            "Fix: give only the host name, e.g. 'hpc.example.org'",
        ),
        ({"hpc_host": "hpc example.org"}, "hpc_host: 'hpc example.org' contains spaces"),
        (
            {"hpc_host": "me@hpc.example.org"},
            "hpc_host: 'me@hpc.example.org' contains a user name. Fix: put the user into hpc_user",
        ),
        (
            {"hpc_host": "hpc.example.org:2222"},
            "hpc_host: 'hpc.example.org:2222' contains a port. Fix: put the port into hpc_port",
        ),
        ({"gitlab_host": "gitlab.example.com/group"}, "gitlab_host: 'gitlab.example.com/group' contains a path"),
        ({"hpc_user": "Jane Doe"}, "hpc_user: 'Jane Doe' is not a valid user name"),
        ({"hpc_workdir": "scratch/me"}, "hpc_workdir: 'scratch/me' is not an absolute path. Fix: start it with '/'"),
        (
            {"hpc_workdir": "/scratch/../etc"},
            "hpc_workdir: '/scratch/../etc' contains characters or parts that are unsafe",
        ),
        ({"hpc_workdir": "/my work"}, "hpc_workdir: '/my work' contains characters"),
        (
            {"hpc_jump_host": "https://jump.example.org"},
            "hpc_jump_host: 'https://jump.example.org' contains a URL scheme",
        ),
        ({"hpc_jump_host": "hpc.example.org"}, "hpc_jump_host: is the same host as hpc_host"),
        ({"author_email": "jane"}, "author_email: 'jane' is not an e-mail address"),
        ({"wandb_project": "my/project"}, "wandb_project: 'my/project' is not a valid W&B project"),
        (
            {"ml_framework": "jax"},
            "ml_framework: 'jax' is not one of the choices. Fix: choose one of scikit-learn, pytorch",
        ),
        (
            {"scheduler": "none", "slurm_partition": "gpu"},
            "slurm_partition: is set to 'gpu' but scheduler is 'none'. "
            "Fix: clear slurm_partition or choose scheduler 'slurm'",
        ),
        ({"use_gpu": "yes"}, "use_gpu: 'yes' has no effect with ml_framework 'scikit-learn'"),
        (
            {"use_gpu": "yes", "ml_framework": "pytorch", "container_runtime": "charliecloud"},
            "use_gpu: 'yes' is not supported with container_runtime 'charliecloud'",
        ),
        (
            {"hpc_auth": "command-key", "hpc_jump_host": "jump.example.org"},
            "hpc_auth: 'command-key' cannot be used through hpc_jump_host",
        ),
    ],
)
def test_bad_answers_name_the_field_and_the_fix(changes, expected):
    found = problems(**changes)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    "changes",
    [
        {"hpc_jump_host": "me@jump.example.org:2222"},
        {"gitlab_host": "gitlab.example.com:8443"},
        {"hpc_host": "10.1.2.3"},
        {"use_gpu": "yes", "ml_framework": "pytorch"},
        {"scheduler": "none"},
        {"hpc_workdir": "/pfs/work7/workspace/scratch/ab_cd-mlops"},
    ],
)
def test_good_answers_pass(changes):
    assert problems(**changes) == []


def test_missing_and_unknown_answers_are_reported():
    answers = dict(DEFAULTS)
    del answers["hpc_user"]
    answers["hpc_password"] = "x"
    found = [str(p) for p in options.validate(answers)]
    assert any(p.startswith("hpc_user: is missing") for p in found)
    assert any(p.startswith("hpc_password: is not an option") for p in found)


def test_no_option_asks_for_a_secret():
    for option in options.OPTIONS:
        assert not any(word in option.name for word in ("password", "secret", "token", "api_key", "otp")), option.name
