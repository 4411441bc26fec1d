"""GitLab's pipeline-variable setting (issue 17.1) and the per-cluster upload (issue 21).

The advice is a table (mlops.credentials.gitlab_api.advise); `mlops check-credentials --gitlab` and
`mlops variables upload --apply` are run through the real client (python-gitlab) against a stand-in on
127.0.0.1 that records what GitLab would receive (support.gitlab_standin; a real GitLab cannot run here).
"""

from __future__ import annotations

import subprocess

import pytest

from mlops import cli, settings
from mlops.credentials import gitlab_api
from mlops.credentials.gitlab_api import ProjectCi, Trigger
from support.gitlab_standin import API, GitLabStandIn
from support.render import PROJECT_TEMPLATE, answers_for

SKELETON = (PROJECT_TEMPLATE / "mlops.toml").read_text()
# The template's first cluster `hpc` (auth totp) and a key-login cluster `bw`.
SECOND = '\n[clusters.bw]\nhost = "uc3.scc.kit.edu"\nuser = "ab_cd1234"\nworkdir = "/pfs/ws"\nauth = "key"\n' \
         'runtime = "podman"\nscheduler = "none"\n'  # fmt: skip
TOTP_CANARY = "JBSWY3DPEHPK3PXPCANARYAAAAAAAAAA"  # base32, 32 characters: a canary TOTP secret
URL, PROJECT = "https://gitlab.example.com", "group/forecasting-experiments"


@pytest.fixture
def s(tmp_path, monkeypatch):
    (tmp_path / "mlops.toml").write_text(settings.fill_toml(SKELETON, answers_for({})) + SECOND)
    monkeypatch.chdir(tmp_path)
    return settings.load(tmp_path)


def status(results) -> list[str]:
    return [r.status for r in results]


@pytest.mark.parametrize(
    ("restrict", "role", "stored", "click", "expected", "text"),
    [
        # every cluster computes its codes (TOTP stored for hpc; bw logs in by key): nobody needs variables
        (True, "developer", {("HPC_TOTP_SECRET", "hpc/hpc")}, "developer", "FAIL", "set it to no_one_allowed"),
        (True, "no_one_allowed", {("HPC_TOTP_SECRET", "hpc/hpc")}, "developer", "PASS", "as it should be"),
        (True, "no_one_allowed", {("HPC_TOTP_SECRET", "hpc/*")}, "maintainer", "PASS", "as it should be"),
        # restrict off: any Developer may set variables, whatever the role says
        (False, "no_one_allowed", {("HPC_TOTP_SECRET", "hpc/hpc")}, "developer", "FAIL", "restrict_user_defined"),
        # hpc types HPC_OTP (its secret is stored for another cluster only): the clicking role must be allowed
        (True, "no_one_allowed", {("HPC_TOTP_SECRET", "hpc/bw")}, "developer", "FAIL", "cannot type the code"),
        (True, "developer", set(), "developer", "PASS", "cluster(s) hpc log in with a code typed"),
        (True, "owner", set(), "maintainer", "FAIL", "set it to maintainer"),
        (True, "developer", set(), "maintainer", "FAIL", "a developer can set pipeline variables"),
        # GitLab < 17.1 or a token below Maintainer: the role is not shown
        (None, None, set(), "developer", "FAIL", "GitLab did not show it"),
        (True, None, {("HPC_TOTP_SECRET", "hpc/hpc")}, "developer", "FAIL", "is maintainer"),
    ],
)
def test_advice_follows_the_clusters_codes_and_the_role(s, restrict, role, stored, click, expected, text):
    results = gitlab_api.advise(s, ProjectCi(restrict, role, stored), click, URL, PROJECT)
    assert status(results) == [expected], results
    assert text in str(results[0]), str(results[0])
    if expected == "FAIL" and role is not None:  # the fix is the API call that sets the role wanted
        hpc_computes = {("HPC_TOTP_SECRET", "hpc/hpc"), ("HPC_TOTP_SECRET", "hpc/*")} & stored  # hpc: totp
        want = "no_one_allowed" if hpc_computes else click
        assert f"ci_pipeline_variables_minimum_override_role={want}" in results[0].fix
        assert "$GITLAB_TOKEN" in results[0].fix  # the token from the environment, never on a command line


def test_trigger_tokens_must_be_owned_below_the_role(s):
    triggers = [Trigger("notify", "rep", 20), Trigger("old", "dev", 30), Trigger("lost", "?", None)]
    typed = gitlab_api.advise(s, ProjectCi(True, "developer", set(), triggers), "developer", URL, PROJECT)
    assert status(typed) == ["PASS", "PASS", "FAIL", "FAIL"]
    assert "below developer" in typed[1].detail and "of unknown role" in typed[3].detail
    stored = {("HPC_TOTP_SECRET", "hpc/hpc")}
    none = gitlab_api.advise(s, ProjectCi(True, "no_one_allowed", stored, triggers), "developer", URL, PROJECT)
    assert status(none) == ["PASS"] * 4  # no pipeline can carry variables at all


def test_check_credentials_gitlab_reads_the_setting_and_changes_nothing(s, tmp_path, monkeypatch, capsys):
    with GitLabStandIn(triggers=[{"description": "notify", "owner": {"id": 5, "username": "bot"}}]) as gl:
        gl.members[5] = 30
        gl.variables.append({"key": "HPC_TOTP_SECRET", "environment_scope": "hpc/hpc"})
        for name in ("HPC_TOTP_SECRET", "HPC_SSH_PRIVATE_KEY", "WANDB_API_KEY", "MLOPS_TRIGGER_TOKEN", "CI"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("GITLAB_TOKEN", gl.token)
        rc = cli.main(["check-credentials", "--gitlab", "--url", gl.url, "--project", gl.path])
    out = capsys.readouterr().out
    assert rc == 0, out  # problems are advice without --strict
    assert "[FAIL] GitLab ci_pipeline_variables_minimum_override_role of group/forecasting-experiments" in out
    assert "is developer" in out and "set it to no_one_allowed" in out
    assert "[PASS] trigger token 'notify' (owner bot)" in out
    assert "GitLab: 1 problem(s)" in out and gl.token not in out
    assert {r.method for r in gl.requests} == {"GET"}, "a check changes nothing on GitLab"
    paths = {r.path for r in gl.requests}
    assert {API + "/projects/" + gl.path, API + "/projects/7/variables", API + "/projects/7/triggers"} <= paths
    assert API + "/projects/7/members/all/5" in paths


def _key(tmp_path):
    key = tmp_path / "keys" / "id_ci"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_upload_sets_one_clusters_variables_under_its_scope_only(s, tmp_path, monkeypatch, capsys):
    key = _key(tmp_path)
    for name in ("HPC_PASSWORD", "WANDB_API_KEY", "MLOPS_TRIGGER_TOKEN", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HPC_SSH_PRIVATE_KEY", str(key))
    monkeypatch.setenv("HPC_TOTP_SECRET", TOTP_CANARY)
    with GitLabStandIn() as gl:
        monkeypatch.setenv("GITLAB_TOKEN", gl.token)
        argv = ["variables", "upload", "--url", gl.url, "--project", gl.path]
        assert cli.main([*argv, "--cluster", "bw"]) == 0  # a dry run: nothing is sent
        assert gl.requests == [] and "would set HPC_SSH_PRIVATE_KEY (file" in capsys.readouterr().out
        assert cli.main([*argv, "--cluster", "bw", "--apply"]) == 0
        assert cli.main([*argv, "--cluster", "hpc", "--apply"]) == 0
        assert cli.main([*argv, "--cluster", "hpc", "--apply"]) == 0  # again: updates, no duplicates
    out = capsys.readouterr().out
    sent = [(r.method, r.body.get("key") or r.path.rsplit("/", 1)[-1], r.body["environment_scope"]) for r in
            gl.requests if r.method in ("POST", "PUT")]  # fmt: skip
    assert sent == [
        ("POST", "HPC_SSH_PRIVATE_KEY", "hpc/bw"),  # bw logs in by key: no TOTP secret goes there
        ("POST", "HPC_SSH_PRIVATE_KEY", "hpc/hpc"),
        ("POST", "HPC_TOTP_SECRET", "hpc/hpc"),
        ("PUT", "HPC_SSH_PRIVATE_KEY", "hpc/hpc"),
        ("PUT", "HPC_TOTP_SECRET", "hpc/hpc"),
    ]
    totp = [r for r in gl.requests if r.body.get("value") == TOTP_CANARY]
    assert totp and all(r.body["environment_scope"] == "hpc/hpc" for r in totp)
    created = [r.body for r in gl.requests if r.method == "POST"]
    assert all(b["masked_and_hidden"] for b in created if b["key"] == "HPC_TOTP_SECRET")
    assert all(b["variable_type"] == "file" and b["value"] == key.read_text() for b in created[:2])
    assert TOTP_CANARY not in out and "PRIVATE KEY" not in out and gl.token not in out
    assert "created HPC_TOTP_SECRET (env_var, protected, masked and hidden, scope hpc/hpc)" in out
    # after an upload, the setting: hpc stores its TOTP secret, bw logs in by key -> nobody needs variables
    assert "set it to no_one_allowed" in out


def test_upload_refuses_a_bad_value_before_sending_anything(s, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HPC_SSH_PRIVATE_KEY", str(_key(tmp_path)))
    monkeypatch.setenv("HPC_TOTP_SECRET", "not base32 at all!")
    with GitLabStandIn() as gl:
        monkeypatch.setenv("GITLAB_TOKEN", gl.token)
        rc = cli.main(["variables", "upload", "--url", gl.url, "--project", gl.path, "--cluster", "hpc", "--apply"])
    err = capsys.readouterr().err
    assert rc == 2 and gl.requests == []
    assert "cluster hpc: TOTP secret ($HPC_TOTP_SECRET)" in err and "nothing was changed on GitLab" in err
    assert "not base32 at all" not in err
