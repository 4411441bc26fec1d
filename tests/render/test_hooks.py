"""Bad answers are rejected by the pre-gen hook with the field and the fix, leaving nothing of the project
behind (only the good answers, kept for the next try: mlops.retry_answers)."""

import signal

import pytest
from cookiecutter.exceptions import FailedHookException

from mlops import retry_answers
from support.render import render


@pytest.mark.parametrize(
    "answers, expected",
    [
        (
            {"project_name": "2024 Study"},
            "project_slug: '2024-study' is not a valid slug (derived from project_name "
            "'2024 Study'). Fix: answer project_slug yourself",
        ),
        ({"hpc_port": "70000"}, "hpc_port: '70000' is not a TCP port. Fix: use a number from 1 to 65535"),
        ({"hpc_host": "https://hpc.example.org"}, "hpc_host: 'https://hpc.example.org' contains a URL scheme"),
        ({"hpc_host": "login node.example.org"}, "hpc_host: 'login node.example.org' contains spaces"),
        ({"hpc_workdir": "work/mlops"}, "hpc_workdir: 'work/mlops' is not an absolute path"),
        ({"scheduler": "none", "slurm_account": "ml-lab"}, "slurm_account: is set to 'ml-lab' but scheduler is 'none'"),
        ({"use_gpu": "yes"}, "use_gpu: 'yes' has no effect with ml_framework 'scikit-learn'"),
        ({"hpc_auth": "command-key", "hpc_jump_host": "jump.example.org"}, "hpc_auth: 'command-key' cannot be used"),
    ],
)
def test_rejected_render_names_the_field_and_leaves_nothing(tmp_path, capfd, answers, expected):
    out = tmp_path / "out"
    with pytest.raises(FailedHookException):
        render(out, **answers)
    err = capfd.readouterr().err
    assert expected in err and "Fix:" in err
    assert "nothing was generated" in err
    leftovers = [p for p in out.iterdir() if p.name != ".cookiecutter-home"]
    assert [p.name for p in leftovers] == [retry_answers.FILENAME]
    field = expected.split(":")[0]
    assert f'"{field}"' not in leftovers[0].read_text()  # a refused answer is not kept


def test_several_problems_are_reported_at_once(tmp_path, capfd):
    with pytest.raises(FailedHookException):
        render(tmp_path, hpc_port="0", hpc_workdir="rel")
    err = capfd.readouterr().err
    assert "hpc_port:" in err and "hpc_workdir:" in err


def test_relative_template_path_is_validated_before_generation(tmp_path):
    """cookiecutter passes `_repo_dir` as typed; the pre-gen hook must still find the rules."""
    import os
    import shutil
    import subprocess

    from support.render import TEMPLATE

    shutil.copytree(TEMPLATE, tmp_path / "tpl", ignore=shutil.ignore_patterns(".git", "__pycache__"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config.yaml").write_text(f"replay_dir: {tmp_path / 'home'}\n")
    result = subprocess.run(
        [
            "cookiecutter",
            "--no-input",
            "--config-file",
            str(tmp_path / "home" / "config.yaml"),
            "./tpl",
            "hpc_port=0",
            "-o",
            "out",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PWD": str(tmp_path)},
        # SIGINT handled, as in a terminal, whatever this test run inherited (a background job ignores it;
        # tests/unit/test_retry_answers_signal.py covers that case)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert result.returncode != 0
    assert "hpc_port: '0' is not a TCP port" in result.stderr
    # Refused by the pre-gen hook: only it stops the cookiecutter command (click's "Aborted!", no traceback).
    assert "Aborted!" in result.stdout + result.stderr and "Traceback" not in result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [retry_answers.FILENAME]


def test_a_name_with_punctuation_gives_a_valid_slug(tmp_path):
    """cookiecutter's slugify filter derives the default slug (issue 10: "Jane's Forecasting (v2)")."""
    project = render(tmp_path, project_name="Jane's Forecasting (v2)")
    assert project.name == "jane-s-forecasting-v2"
