"""The CI job's environment and tool (contract F, issue 17.1/17.2) and the per-cluster include list (21),
without running a pipeline: .gitlab/ci/job.sh's filter run by bash with a probe in place of mlops.sh,
mlops.jobenv's allow-list, the hash locks, mlops.ci's block of .gitlab-ci.yml."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from mlops import ci, civars, errors, jobenv
from support.render import PROJECT_TEMPLATE

JOB_SH = PROJECT_TEMPLATE / ".gitlab" / "ci" / "job.sh"
LOCKS = PROJECT_TEMPLATE / ".gitlab" / "ci" / "lock"

STEERING = {
    "LD_PRELOAD": "/tmp/x.so",
    "LD_LIBRARY_PATH": "/tmp",
    "LD_AUDIT": "/tmp/x.so",
    "GCONV_PATH": "/tmp",
    "BASH_ENV": "$(touch /nonexistent/x)",
    "ENV": "/tmp/env",
    "PYTHONPATH": "/tmp",
    "PYTHONWARNINGS": "ignore::antigravity.x",
    "PYTHONSTARTUP": "/tmp/s.py",
    "PYTHONHOME": "/tmp",
    "BROWSER": "sh -c id %s",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_CONFIG_FILE": "/tmp/pip.conf",
    "GIT_SSH_COMMAND": "id",
    "GIT_CONFIG_COUNT": "1",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "SSL_CERT_FILE": "/tmp/ca",
    "REQUESTS_CA_BUNDLE": "/tmp/ca",
    "WANDB_BASE_URL": "http://127.0.0.1:9",
    "LOCALDOMAIN": "attacker.invalid",
    "RES_OPTIONS": "ndots:9",
    "HOSTALIASES": "/tmp/aliases",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "PATH": "/tmp/bin:/usr/bin:/bin",
    "IFS": "x",
    "POSIXLY_CORRECT": "1",
}
KEPT = {
    "HPC_SSH_PRIVATE_KEY": "/tmp/key",
    "HPC_TOTP_SECRET": "CANARYTOTPSECRET",
    "MLOPS_TRIGGER_TOKEN": "glptt-canary",
    "WANDB_API_KEY": "c0ffee",
    "CI_PIPELINE_ID": "42",
    "GITLAB_USER_LOGIN": "ada",
}


def _run_job_sh(tmp_path: Path, exported: dict[str, str]) -> dict[str, str]:
    """Source the real job.sh the way GitLab's runner runs a job line (variables exported inside the
    script, then the line), with a probe in place of mlops.sh that writes the environment it got."""
    (tmp_path / ".gitlab" / "ci").mkdir(parents=True)
    shutil.copy(JOB_SH, tmp_path / ".gitlab" / "ci" / "job.sh")
    probe = tmp_path / ".gitlab" / "ci" / "mlops.sh"
    probe.write_text(f'printf "%s\\0" "$@" > {tmp_path}/argv\n/usr/bin/env -0 > {tmp_path}/env\n')
    script = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exported.items())
    script += ". .gitlab/ci/job.sh click status --cluster uni\n"
    proc = subprocess.run(
        ["/bin/bash"], input=script, cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "argv").read_text().split("\0")[:-1] == ["click", "status", "--cluster", "uni"]
    return dict(item.split("=", 1) for item in (tmp_path / "env").read_text().split("\0") if item)


def test_job_sh_drops_every_steering_variable_before_anything_runs(tmp_path):
    env = _run_job_sh(tmp_path, {**STEERING, **KEPT})
    assert not set(STEERING) & set(env), sorted(set(STEERING) & set(env))
    assert {k: env[k] for k in KEPT} == KEPT
    assert set(env) - set(KEPT) <= {"PWD", "SHLVL", "_", "OLDPWD"}, sorted(env)


def test_mlops_sh_is_shellcheck_clean_and_fixes_path_and_python(tmp_path):
    """The second step sets PATH itself (readonly) and starts Python isolated, by absolute path."""
    text = (PROJECT_TEMPLATE / ".gitlab" / "ci" / "mlops.sh").read_text()
    assert "readonly PATH=/usr/local/bin:/usr/bin:/bin" in text
    assert re.search(r'"\$work/venv/bin/python" -I -m mlops\.jobenv', text)
    assert "--require-hashes --only-binary :all:" in text and "--isolated" in text


def test_jobenv_keeps_the_table_and_checked_job_data_only():
    env = {
        **KEPT,
        "HPC_PASSWORD": "pw",
        "HPC_OTP": "123456",
        "PATH": "/usr/bin",
        "HOME": "/tmp/h",
        "CI_COMMIT_SHA": "a" * 40,
        "CI_COMMIT_REF_NAME": "feature/x-1",
        "CI_PROJECT_ID": "77",
        "CI_API_V4_URL": "http://127.0.0.1:9/api/v4",
        "CI_SERVER_URL": "http://127.0.0.1:9",
        "CI_PROJECT_URL": "http://127.0.0.1:9/g/p",
        "CI_JOB_TOKEN": "job-token",
        "MLOPS_TOOL_DIR": "/tmp/evil",
        "MLOPS_RUN_ID": "../x",
        "HPC_SOMETHING_ELSE": "x",
        "CI_PIPELINE_SOURCE": "trigger",
    }
    kept = jobenv.job_environment(env)
    assert set(kept) == {*KEPT, "HPC_PASSWORD", "HPC_OTP", "PATH", "HOME", "CI_COMMIT_SHA", "CI_COMMIT_REF_NAME"} | {
        "CI_PROJECT_ID"
    }
    assert jobenv.SECRET_NAMES == {v.name for v in civars.VARIABLES}


@pytest.mark.parametrize(
    "name,value",
    [
        ("CI_PIPELINE_ID", "1/../../x"),
        ("CI_PIPELINE_ID", "12 34"),
        ("CI_PROJECT_ID", "77/../../other"),
        ("CI_COMMIT_SHA", "HEAD"),
        ("CI_COMMIT_REF_NAME", "main/../../x"),
        ("CI_COMMIT_REF_NAME", "-rf"),
        ("CI_PIPELINE_URL", "https://x/\nInjected: line"),
        ("GITLAB_USER_LOGIN", "ada\u202e"),
    ],
)
def test_jobenv_refuses_a_job_datum_that_gitlab_would_not_give(name, value):
    with pytest.raises(errors.BadInput) as caught:
        jobenv.job_environment({name: value})
    assert name in str(caught.value) and value not in str(caught.value)


def test_the_locks_pin_every_extra_with_hashes_for_wheels_only():
    """Every requirement of the extras a lock is made from is pinned (==) with at least one sha256 per
    package; `cluster` (a laptop's install) is exactly ssh + report + wandb."""
    extras = tomllib.loads((PROJECT_TEMPLATE / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(extras["cluster"]) == sorted(extras["ssh"] + extras["report"] + extras["wandb"])
    needs = {"click": ("ssh",), "collect": ("ssh", "report", "wandb")}
    script = (PROJECT_TEMPLATE / ".gitlab" / "ci" / "lock.sh").read_text()
    for lock, groups in needs.items():
        assert f"lock {lock} {' '.join(groups)}\n" in script
        text = (LOCKS / f"{lock}.txt").read_text()
        blocks = re.findall(r"(?m)^([A-Za-z0-9._-]+)==(\S+)(.*?)(?=^\S|\Z)", text, re.S)
        pinned = {re.sub(r"[-_.]+", "-", name).lower() for name, _, _ in blocks}
        assert all("--hash=sha256:" in body for _, _, body in blocks)
        wanted = ["jsonschema>=4.18"] + [r for g in groups for r in extras[g]]
        for req in wanted:
            assert re.split(r"[<>=!~ \[]", req)[0].lower() in pinned, (lock, req)


def _ci_text(block: str) -> str:
    return f"stages: [validate]\ninclude:\n  - local: .gitlab/ci/tool.yml\n{block}  - local: .gitlab/ci/template.yml\n"


def test_ci_write_rewrites_only_the_cluster_block_and_reports_drift(tmp_path):
    (tmp_path / ".gitlab-ci.yml").write_text(_ci_text(ci.block(["uni"])))
    assert ci.drift(tmp_path, ["uni"]) is None
    problem = ci.drift(tmp_path, ["uni", "bw-hpc"])
    assert problem and "mlops ci write" in problem
    assert ci.write(tmp_path, ["uni", "bw-hpc"]) is True
    text = (tmp_path / ".gitlab-ci.yml").read_text()
    assert text == _ci_text(ci.block(["uni", "bw-hpc"]))
    assert text.count("- local: .gitlab/ci/cluster.yml") == 2 and 'cluster: "bw-hpc"' in text
    assert ci.write(tmp_path, ["uni", "bw-hpc"]) is False and ci.drift(tmp_path, ["uni", "bw-hpc"]) is None


def test_ci_write_without_the_markers_names_the_fix_and_writes_nothing(tmp_path):
    (tmp_path / ".gitlab-ci.yml").write_text("include:\n  - local: .gitlab/ci/cluster.yml\n")
    before = (tmp_path / ".gitlab-ci.yml").read_text()
    with pytest.raises(errors.BadInput, match="cluster block is missing"):
        ci.write(tmp_path, ["uni"])
    assert (tmp_path / ".gitlab-ci.yml").read_text() == before and not list(tmp_path.glob("*.tmp"))


def test_the_rendered_ci_file_has_exactly_the_block_ci_write_makes(tmp_path):
    from support.render import render

    project = render(tmp_path, hpc_host="Login.Uni.example.org")
    assert ci.drift(project, ["login"]) is None
