"""One cluster's values at a time (issue 21), every hpc_auth expressible (18.7), host keys pinned in the
repository (17.2): `mlops variables local`, `--codes typed`, `mlops known-hosts show|add`.

Oracles: yaml.safe_load for the gitlab-ci-local file (gitlab-ci-local reads it with js-yaml), `ssh-keygen -F`
for the pinned known_hosts.
"""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
import yaml

from mlops import cli, settings
from support.render import PROJECT_TEMPLATE, answers_for

SKELETON = (PROJECT_TEMPLATE / "mlops.toml").read_text()
SECOND = '\n[clusters.bw]\nhost = "uc3.scc.kit.edu"\nport = 2222\nuser = "ab_cd1234"\nworkdir = "/pfs/ws"\n' \
         'auth = "totp+password"\nruntime = "podman"\nscheduler = "none"\n'  # fmt: skip
CANARY = {"hpc": "JBSWY3DPEHPK3PXPHPCANARYAAAAAAAA", "bw": "JBSWY3DPEHPK3PXPBWCANARYAAAAAAAA"}
PASSWORD_CANARY = "pw-canary-of-bw-0123456789"  # pragma: allowlist secret
LOCAL = ".gitlab-ci-local-variables.yml"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mlops.toml").write_text(settings.fill_toml(SKELETON, answers_for({})) + SECOND)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("CI", "GITLAB_CI", "WANDB_API_KEY", "MLOPS_TRIGGER_TOKEN", "HPC_PASSWORD", "HPC_TOTP_SECRET"):
        monkeypatch.delenv(name, raising=False)
    key = tmp_path / "home" / ".ssh" / "id_ci"
    key.parent.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    monkeypatch.setenv("HPC_SSH_PRIVATE_KEY", str(key))
    return tmp_path


def local(monkeypatch, cluster: str, *extra: str, **env: str) -> int:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cli.main(["variables", "local", "--cluster", cluster, *extra])


def test_local_file_keeps_each_cluster_under_its_scope(project, monkeypatch, capsys):
    assert local(monkeypatch, "hpc", HPC_TOTP_SECRET=CANARY["hpc"]) == 0
    monkeypatch.delenv("HPC_TOTP_SECRET")
    assert local(monkeypatch, "bw", HPC_TOTP_SECRET=CANARY["bw"], HPC_PASSWORD=PASSWORD_CANARY) == 0
    path = project / LOCAL
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["HPC_TOTP_SECRET"] == {"type": "variable", "values": {"hpc/hpc": CANARY["hpc"], "hpc/bw": CANARY["bw"]}}
    assert doc["HPC_PASSWORD"] == {"type": "variable", "values": {"hpc/bw": PASSWORD_CANARY}}
    key = os.environ["HPC_SSH_PRIVATE_KEY"]
    assert doc["HPC_SSH_PRIVATE_KEY"] == {"values": {"hpc/hpc": key, "hpc/bw": key}}  # a path: gitlab-ci-local copies
    out = capsys.readouterr()
    assert not any(c in out.out + out.err for c in (*CANARY.values(), PASSWORD_CANARY))
    # hpc switches to typed codes: its stored secret goes, bw's values stay as they were
    monkeypatch.delenv("HPC_TOTP_SECRET")
    assert local(monkeypatch, "hpc", "--codes", "typed") == 0
    doc = yaml.safe_load(path.read_text())
    assert doc["HPC_TOTP_SECRET"]["values"] == {"hpc/bw": CANARY["bw"]}
    assert "each job of hpc needs a typed HPC_OTP" in capsys.readouterr().out
    assert local(monkeypatch, "hpc", "--remove") == 0 and not path.exists()


def test_a_bad_value_writes_nothing_and_names_the_cluster(project, monkeypatch, capsys):
    assert local(monkeypatch, "hpc", HPC_TOTP_SECRET=CANARY["hpc"]) == 0
    before = (project / LOCAL).read_bytes()
    assert local(monkeypatch, "bw", HPC_TOTP_SECRET=CANARY["bw"]) == 2  # totp+password without the password
    err = capsys.readouterr().err
    assert "cluster bw: " in err and "HPC_PASSWORD" in err and "nothing was written" in err
    assert (project / LOCAL).read_bytes() == before
    assert not list(project.glob("*.tmp"))


def test_codes_typed_only_for_a_code_login_cluster(project, monkeypatch, capsys):
    text = (project / "mlops.toml").read_text().replace('auth = "totp+password"', 'auth = "key"')
    (project / "mlops.toml").write_text(text)
    assert local(monkeypatch, "bw", "--codes", "typed") == 2
    assert "--codes typed: cluster bw logs in with auth 'key'" in capsys.readouterr().err
    assert not (project / LOCAL).exists()


def host_line(tmp_path, name: str) -> tuple[str, str]:
    """A known_hosts line for `name` with a fresh host key, and the key's SHA256 fingerprint (ssh-keygen)."""
    key = tmp_path / f"host-{len(list(tmp_path.glob('host-*')))}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().split()
    fp = subprocess.run(["ssh-keygen", "-lf", str(key) + ".pub"], capture_output=True, text=True, check=True)
    return f"{name} {public[0]} {public[1]}\n", fp.stdout.split()[1]


def test_known_hosts_add_pins_the_lines_openssh_would_use(project, monkeypatch, capsys, tmp_path):
    hpc, hpc_fp = host_line(tmp_path, "hpc.example.org")
    bw, bw_fp = host_line(tmp_path, "[uc3.scc.kit.edu]:2222")
    other, _ = host_line(tmp_path, "elsewhere.example.org")
    user = tmp_path / "user_known_hosts"
    user.write_text(other + hpc + bw)
    assert cli.main(["known-hosts", "show", "--cluster", "bw", "--from", str(user)]) == 0
    assert bw_fp in capsys.readouterr().out
    pinned = project / ".gitlab" / "known_hosts"
    assert not pinned.exists()
    for cluster in ("hpc", "bw", "bw"):  # twice: nothing is added again
        assert cli.main(["known-hosts", "add", "--cluster", cluster, "--from", str(user)]) == 0
    out = capsys.readouterr().out
    assert hpc_fp in out and bw_fp in out and "0 line(s) added" in out
    for name, fp in (("hpc.example.org", hpc_fp), ("[uc3.scc.kit.edu]:2222", bw_fp)):
        found = subprocess.run(["ssh-keygen", "-l", "-F", name, "-f", str(pinned)], capture_output=True, text=True)
        assert fp in found.stdout, found.stdout  # OpenSSH finds exactly this key for the host
    assert "elsewhere" not in pinned.read_text()
    assert len([line for line in pinned.read_text().splitlines() if not line.startswith("#")]) == 2


def test_known_hosts_add_without_a_line_adds_nothing(project, capsys, tmp_path):
    hpc, _ = host_line(tmp_path, "hpc.example.org")
    user = tmp_path / "user_known_hosts"
    user.write_text(hpc)
    assert cli.main(["known-hosts", "add", "--cluster", "bw", "--from", str(user)]) == 2
    err = capsys.readouterr().err
    assert "has no line for [uc3.scc.kit.edu]:2222 (cluster bw); nothing was added" in err
    assert not (project / ".gitlab" / "known_hosts").exists()
