"""Local credential checks: the bad-input matrix (one test per case) and the checks that must pass.

Every case runs the real `mlops` command of a rendered project with a controlled environment and
asserts the message (what is wrong + the fix), the exit code in strict mode, and that nothing was left
behind: no variables file, no temp file, the project tree unchanged. Secrets are random per test run.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from support.render import render

# ------------------------------------------------------------------ helpers


def make_key(directory: Path, name: str = "id_test", passphrase: bytes | None = None, mode: int = 0o600) -> Path:
    """A fresh ed25519 key pair (OpenSSH format) written without any secret on a command line."""
    key = ed25519.Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    path = directory / name
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc))
    path.chmod(mode)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    Path(f"{path}.pub").write_bytes(pub + b" test@mlops\n")
    return path


def host_key_line(name: str) -> str:
    pub = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return f"{name} {pub}\n"


def random_totp() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode()


def random_wandb() -> str:
    return secrets.token_hex(20)  # the legacy 40-character form


def random_glpat() -> str:
    return "glpat-" + secrets.token_urlsafe(15)[:20]


def snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if ".git" not in p.parts and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = render(tmp_path_factory.mktemp("cred"), hpc_host="127.0.0.1", hpc_port="2222", hpc_user="mlopshpc")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)  # for git check-ignore
    return project


@pytest.fixture
def good(project, tmp_path):
    """A complete, valid set of credentials for `project` in a fresh home."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = make_key(home / ".ssh", "id_ed25519")
    known = project / ".gitlab" / "known_hosts"  # the project's pinned host keys (committed)
    known.write_text(host_key_line("[127.0.0.1]:2222"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "CI",
            "GITLAB_CI",
            "HPC_SSH_PRIVATE_KEY",
            "HPC_TOTP_SECRET",
            "HPC_OTP",
            "WANDB_API_KEY",
            "GITLAB_TOKEN",
            "MLOPS_TRIGGER_TOKEN",
        )
    }
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp_path / "tmp"),
        PYTHONPATH=str(project / "src"),
        HPC_TOTP_SECRET=random_totp(),
        WANDB_API_KEY=random_wandb(),
        GITLAB_TOKEN=random_glpat(),
        MLOPS_TRIGGER_TOKEN="glptt-" + secrets.token_hex(20),
    )  # issue 12: the pipeline trigger token
    (tmp_path / "tmp").mkdir()
    return {"env": env, "home": home, "key": key, "known": known, "tmp": tmp_path / "tmp"}


def mlops(project: Path, env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def assert_refused(project: Path, good: dict, expected: list[str], online: bool = False, local: bool = True) -> str:
    """Strict check fails naming the problem and the fix; `variables local` writes nothing; no leftovers."""
    before = snapshot(project)
    check = mlops(project, good["env"], "check-credentials", "--strict", *(["--online"] if online else []))
    out = check.stdout + check.stderr
    assert check.returncode == 2, out
    for text in expected:
        assert text in out, out
    assert "fix:" in out
    if not online:
        if local:
            res = mlops(project, good["env"], "variables", "local")
            assert res.returncode == 2 and "nothing was written" in res.stderr, res.stderr
        dry = mlops(project, good["env"], "variables", "upload", "--project", "g/p")
        assert dry.returncode == 2 and "nothing was changed" in dry.stderr, dry.stderr
    assert not (project / ".gitlab-ci-local-variables.yml").exists()
    assert snapshot(project) == before, "the check changed the project"
    assert list(good["tmp"].iterdir()) == [], "temp files left behind"
    for name in ("HPC_TOTP_SECRET", "WANDB_API_KEY", "GITLAB_TOKEN"):
        if good["env"].get(name):
            assert good["env"][name] not in out
    return out


# ------------------------------------------------------------------ the good case (so the bad ones can fail)


def test_complete_credentials_pass_strict_and_write_the_local_file(project, good):
    check = mlops(project, good["env"], "check-credentials", "--strict")
    assert check.returncode == 0, check.stdout + check.stderr
    out = check.stdout
    assert "[PASS] SSH key, clusters.NAME.ssh_key in mlops.toml (~/.ssh/id_ed25519)" in out and "no passphrase" in out
    assert "matches ~/.ssh/id_ed25519.pub" in out
    assert "[PASS] known_hosts entry for the login node [127.0.0.1]:2222 of cluster 127" in out
    assert "[PASS] TOTP secret" in out and "yields 6-digit codes" in out
    assert "[PASS] W&B API key" in out and "[PASS] GitLab token" in out
    assert "credentials: all set" in out
    for name in ("HPC_TOTP_SECRET", "WANDB_API_KEY", "GITLAB_TOKEN"):
        assert good["env"][name] not in out

    local = mlops(project, good["env"], "variables", "local")
    path = project / ".gitlab-ci-local-variables.yml"
    try:
        assert local.returncode == 0, local.stderr
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        text = path.read_text()
        doc = yaml.safe_load(text)  # gitlab-ci-local reads it with js-yaml: values keyed by environment scope
        assert doc["HPC_SSH_PRIVATE_KEY"] == {"values": {"hpc/127": str(good["key"])}}  # a path: not copied
        assert doc["HPC_TOTP_SECRET"]["values"] == {"hpc/127": good["env"]["HPC_TOTP_SECRET"]}
        assert good["key"].read_text() not in text
        assert good["env"]["HPC_TOTP_SECRET"] in text  # env variables need their value
        assert good["env"]["HPC_TOTP_SECRET"] not in local.stdout + local.stderr
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(path)], cwd=project)
        assert ignored.returncode == 0, ".gitlab-ci-local-variables.yml must be gitignored"
    finally:
        mlops(project, good["env"], "variables", "local", "--remove")
    assert not path.exists()


def test_dry_run_upload_lists_flags_and_never_values(project, good):
    dry = mlops(project, good["env"], "variables", "upload", "--project", "group/proj")
    assert dry.returncode == 0, dry.stderr
    assert (
        "would set HPC_TOTP_SECRET (env_var, protected, masked and hidden, scope hpc/127) on group/proj" in dry.stdout
    )
    assert "would set HPC_SSH_PRIVATE_KEY (file, protected, not masked, scope hpc/127)" in dry.stdout
    assert "HPC_OTP" not in dry.stdout  # typed at job start, never stored
    assert "dry run: nothing was sent" in dry.stdout
    for value in (good["env"]["HPC_TOTP_SECRET"], good["env"]["WANDB_API_KEY"], good["key"].read_text()):
        assert value not in dry.stdout + dry.stderr


def test_upload_apply_to_unreachable_gitlab_changes_nothing_and_says_why(project, good):
    from support.infra.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"
    res = mlops(project, good["env"], "variables", "upload", "--project", "group/proj", "--url", url, "--apply")
    assert res.returncode == 2
    assert f"cannot reach project 'group/proj' at {url}" in res.stderr and "nothing was changed" in res.stderr
    assert good["env"]["GITLAB_TOKEN"] not in res.stdout + res.stderr


def test_non_strict_check_reports_missing_and_exits_zero(project, good):
    env = {**good["env"]}
    for name in ("HPC_TOTP_SECRET", "WANDB_API_KEY", "GITLAB_TOKEN"):
        env.pop(name)
    good["known"].unlink()
    res = mlops(project, env, "check-credentials")
    assert res.returncode == 0, res.stderr
    assert "[MISSING] TOTP secret ($HPC_TOTP_SECRET): not set" in res.stdout
    assert "[MISSING] known_hosts entry for the login node [127.0.0.1]:2222 of cluster 127" in res.stdout
    # wandb.mode offline (the default): no key is fine, the runs stay in the artifacts; not a problem
    assert "[SKIP] W&B API key ($WANDB_API_KEY): not set: fine for wandb.mode offline" in res.stdout
    assert "credentials: 2 problem(s)" in res.stdout
    strict = mlops(project, {**env, "MLOPS_STRICT_CREDENTIALS": "1"}, "check-credentials")
    assert strict.returncode == 2


# ------------------------------------------------------------------ the bad-input matrix, one test per case


def test_public_key_given_as_private_key(project, good):
    good["env"]["HPC_SSH_PRIVATE_KEY"] = f"{good['key']}.pub"
    assert_refused(project, good, ["[FAIL] SSH key", "is a PUBLIC key", "the file WITHOUT .pub"])


def test_private_key_readable_by_others(project, good):
    good["key"].chmod(0o644)
    assert_refused(project, good, ["is readable by other users (mode 0644)", "chmod 600 ~/.ssh/id_ed25519"])


def test_encrypted_key_in_ci(project, good):
    key = make_key(good["home"] / ".ssh", "id_ed25519", passphrase=secrets.token_hex(8).encode())
    good["env"]["CI"] = "true"
    out = assert_refused(
        project,
        good,
        ["protected by a passphrase: a CI job cannot type it", "give CI its own key without a passphrase"],
    )
    assert key.read_bytes()  # untouched
    # the same key on a laptop is fine (ssh-agent), and says so
    del good["env"]["CI"]
    laptop = mlops(project, good["env"], "check-credentials")
    assert "[PASS] SSH key" in laptop.stdout and "protected by a passphrase (fine on a laptop" in laptop.stdout
    assert "FAIL" not in out.split("[FAIL] SSH key")[0]


def test_missing_known_hosts_entry(project, good):
    """The project's .gitlab/known_hosts pins other hosts only: the strict check names the fix. The pinned file
    is committed, not a CI variable, so `variables local` has nothing of it to write (and does not refuse)."""
    good["known"].write_text(host_key_line("[127.0.0.1]:2200") + host_key_line("hpc.example.org"))
    check = mlops(project, good["env"], "check-credentials", "--strict")
    out = check.stdout + check.stderr
    assert check.returncode == 2, out
    expected = [
        "[MISSING] known_hosts entry for the login node [127.0.0.1]:2222 of cluster 127 (in .gitlab/known_hosts)"
    ]
    expected += ["no line for this host", "never ssh-keyscan inside CI", "ssh-keygen -F '[127.0.0.1]:2222'"]
    assert all(text in out for text in expected), out
    local = project / ".gitlab-ci-local-variables.yml"
    try:
        res = mlops(project, good["env"], "variables", "local")
        assert res.returncode == 0 and "hpc_known_hosts" not in local.read_text().lower(), res.stderr
    finally:
        local.unlink(missing_ok=True)


def test_bad_base32_totp_secret(project, good):
    good["env"]["HPC_TOTP_SECRET"] = "JBSWY3DPEHPK3PX0JBSWY3DP81"  # 0, 8 and 1 are not base32
    assert_refused(project, good, ["[FAIL] TOTP secret", "not valid base32", "base32 has no 0, 1, 8 or 9"])


def test_malformed_wandb_key(project, good):
    good["env"]["WANDB_API_KEY"] = secrets.token_hex(19) + " x"
    assert_refused(project, good, ["[FAIL] W&B API key", "contains spaces", "40 characters, 'local-' + 40, or 86"])


def test_gitlab_token_of_the_wrong_shape(project, good):
    good["env"]["GITLAB_TOKEN"] = "glpat_" + secrets.token_hex(4)
    assert_refused(project, good, ["[FAIL] GitLab token", "wrong shape", "expected 'glpat-'"], local=False)


def test_gitlab_deploy_token_is_named(project, good):
    good["env"]["GITLAB_TOKEN"] = "gldt-" + secrets.token_urlsafe(15)
    assert_refused(
        project, good, ["is a deploy token, which cannot set CI/CD variables", "project access token"], local=False
    )


def test_host_unreachable_online(tmp_path, good):
    from support.infra.ports import free_port

    port = free_port()
    project = render(tmp_path / "p", hpc_host="127.0.0.1", hpc_port=str(port), hpc_user="mlopshpc", hpc_auth="key")
    (project / ".gitlab" / "known_hosts").write_text(host_key_line(f"[127.0.0.1]:{port}"))
    good["env"]["PYTHONPATH"] = str(project / "src")
    del good["env"]["GITLAB_TOKEN"]  # keep the GitLab half of --online (needs the internet) out of it
    assert_refused(
        project, good, [f"[FAIL] SSH login mlopshpc@[127.0.0.1]:{port}", f"cannot reach 127.0.0.1:{port}"], online=True
    )


# ------------------------------------------------------------------ online against a real sshd


@pytest.fixture(scope="module")
def sshd():
    from support.infra.sshd_totp import TotpSshServer

    with TotpSshServer(auth="totp") as server:
        yield server


def _online_env(server, good, project):
    (project / ".gitlab" / "known_hosts").write_text(server.known_hosts_line + "\n")
    good["env"].update(
        PYTHONPATH=str(project / "src"),
        HPC_SSH_PRIVATE_KEY=str(server.client_key_path),
        HPC_TOTP_SECRET=server.totp_secret,
    )
    return good


def test_wrong_user_online(tmp_path, good, sshd):
    project = render(tmp_path / "p", hpc_host="127.0.0.1", hpc_port=str(sshd.port), hpc_user="wronguser")
    _online_env(sshd, good, project)
    del good["env"]["GITLAB_TOKEN"]
    before = sshd.count_logins()
    out = assert_refused(
        project, good, ["[FAIL] SSH login wronguser@", "refused the key for wronguser@127.0.0.1"], online=True
    )
    assert sshd.totp_secret not in out
    assert sshd.count_logins() == before


def test_right_user_online_logs_in_once(tmp_path, good, sshd):
    project = render(tmp_path / "p", hpc_host="127.0.0.1", hpc_port=str(sshd.port), hpc_user=sshd.user)
    _online_env(sshd, good, project)
    del good["env"]["GITLAB_TOKEN"]  # no GitLab here: the GitLab half of --online needs a token to run
    before = sshd.count_logins()
    res = mlops(project, good["env"], "check-credentials", "--online", "--strict")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (
        f"[PASS] SSH login {sshd.user}@[127.0.0.1]:{sshd.port} (cluster 127): logged in and ran a command" in res.stdout
    )
    assert sshd.count_logins() == before + 1
    assert sshd.totp_secret not in res.stdout + res.stderr
