"""Host keys and host certificates over a real sshd, decided the way OpenSSH decides (tier infra; needs root).

A server with three host keys (ed25519, ecdsa, rsa) and a certificate on its ed25519 key, re-signed per
group of rows: by an ed25519 CA, an RSA CA with rsa-sha2-512 and with SHA-1 ssh-rsa (ssh-keygen -s -t),
ECDSA CAs with principals in another case or as a wildcard, and a FIDO (sk-ssh-ed25519) CA. For every
known_hosts file of the table the decision of the OpenSSH 9.2 client (`ssh -F /dev/null -o
UserKnownHostsFile=F -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes ...`)
must equal the decision of the mlops login (mlops.ssh.Session) and of `mlops check-credentials --online`
(reading the project's .gitlab/known_hosts); a refusal must be of the same kind (changed / revoked / not
known) in both; and the offline check never calls a file unusable that OpenSSH accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.ssh import Endpoint, HostKeyRefused, Session
from support.infra.sshd_totp import TotpSshServer
from support.render import render
from support.sshcerts import sk_host_certificate

pytestmark = [pytest.mark.timeout(1200)]


def other_key(tmp: Path, kind: str = "ed25519") -> str:
    path = tmp / f"other-{kind}"
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.fixture(scope="module")
def server():
    with TotpSshServer(
        auth="key", host_key_types=("ed25519", "ecdsa", "rsa"), host_cert=True, cert_principals=("127.0.0.1",)
    ) as srv:
        yield srv


def plain_rows(srv, tmp: Path) -> dict[str, tuple[str, str]]:
    """case -> (host to connect to, known_hosts text), with the ed25519-CA certificate on the server."""
    n = f"[127.0.0.1]:{srv.port}"
    key = {k: srv.public_line(k).split(None, 1)[1] for k in ("ed25519", "ecdsa", "rsa")}
    ed_type, ed_b64 = key["ed25519"].split()
    ca = srv.ca_public_line
    other = other_key(tmp)
    return {
        "ecdsa only (server also has ed25519)": ("127.0.0.1", f"{n} {key['ecdsa']}\n"),
        "rsa only": ("127.0.0.1", f"{n} {key['rsa']}\n"),
        "two keys, right one second": ("127.0.0.1", f"{n} {other}\n{n} {key['ed25519']}\n"),
        "@revoked other key": ("127.0.0.1", f"@revoked * {other}\n{n} {key['ed25519']}\n"),
        "@revoked the server's key": ("127.0.0.1", f"{n} {key['ed25519']}\n@revoked {n} {key['ed25519']}\n"),
        "@revoked ed25519, ecdsa pinned": ("127.0.0.1", f"@revoked {n} {key['ed25519']}\n{n} {key['ecdsa']}\n"),
        "malformed line": ("127.0.0.1", f"{n} ssh-ed25519\nthis is not a key line\n{n} {key['ed25519']}\n"),
        "hashed": ("127.0.0.1", f"{hashed(n)} {key['ed25519']}\n"),
        "CRLF and tabs": ("127.0.0.1", f"{n}\t{key['ed25519'].replace(' ', '  ')}\r\n"),
        "CR-only line ends (one line for OpenSSH)": ("127.0.0.1", f"{n} {key['ecdsa']}\r{n} {key['ed25519']}\r"),
        "vertical tab between fields": ("127.0.0.1", f"{n}\x0b{ed_type}\x0b{ed_b64}\n"),
        "comma host list": ("127.0.0.1", f"login.example.org,{n},10.0.0.1 {key['ecdsa']}\n"),
        "wildcard": ("127.0.0.1", f"[127.0.0.*]:{srv.port} {key['ed25519']}\n"),
        "negation": ("127.0.0.1", f"*,!{n} {key['ed25519']}\n"),
        "upper case": ("localhost", f"[LOCALHOST]:{srv.port} {key['ed25519']}\n"),
        "[host]:port needed": ("127.0.0.1", f"127.0.0.1 {key['ed25519']}\n"),
        "@revoked<TAB>, a space later (invalid marker: line skipped)": (
            "127.0.0.1",
            f"@revoked\t{n} {key['ed25519']}\n{n} {key['ed25519']}\n",
        ),
        "@revoked<TAB>, tabs only": ("127.0.0.1", f"@revoked\t{n}\t{ed_type}\t{ed_b64}\n{n} {key['ed25519']}\n"),
        "@REVOKED in upper case (invalid marker)": (
            "127.0.0.1",
            f"@REVOKED {n} {key['ed25519']}\n{n} {key['ecdsa']}\n",
        ),
        "cert-authority": ("127.0.0.1", f"@cert-authority {n} {ca}\n"),
        "cert-authority by wildcard": ("127.0.0.1", f"@cert-authority * {ca}\n"),
        "@cert-authority<TAB>host, a space later (line skipped)": ("127.0.0.1", f"@cert-authority\t{n} {ca}\n"),
        "@cert-authority<TAB>host<TAB>type<TAB>key": (
            "127.0.0.1",
            f"@cert-authority\t{n}\t{ca.replace(' ', chr(9))}\n",
        ),
        "@cert-authority<SPACE><TAB>host": ("127.0.0.1", f"@cert-authority \t{n} {ca}\n"),
        "two markers": ("127.0.0.1", f"@cert-authority @revoked * {ca}\n"),
        "cert-authority, name not a principal": ("localhost", f"@cert-authority * {ca}\n"),
        "cert-authority, CA revoked": ("127.0.0.1", f"@cert-authority * {ca}\n@revoked * {ca}\n"),
        "CA revoked, plain key pinned (no plain-key retry)": (
            "127.0.0.1",
            f"@cert-authority * {ca}\n@revoked * {ca}\n{n} {key['ed25519']}\n",
        ),
        "CA trusted, the certified key revoked": (
            "127.0.0.1",
            f"@cert-authority * {ca}\n@revoked * {key['ed25519']}\n",
        ),
        "negation of both names": ("127.0.0.1", f"*,!{n},!127.0.0.1 {key['ed25519']}\n"),
        "wrong key at [host]:port, right at host": ("127.0.0.1", f"{n} {other}\n127.0.0.1 {key['ed25519']}\n"),
        "only ecdsa, under the port-less name": ("127.0.0.1", f"127.0.0.1 {key['ecdsa']}\n"),
        "cert not for this name, plain key pinned": (
            "localhost",
            f"@cert-authority * {ca}\n[localhost]:{srv.port} {key['ed25519']}\n",
        ),
        "cert not for this name, other type at [host]:port": (
            "localhost",
            f"@cert-authority * {ca}\n[localhost]:{srv.port} {key['ecdsa']}\nlocalhost {key['ed25519']}\n",
        ),
        "no match": ("127.0.0.1", f"login.example.org {key['ed25519']}\n"),
    }


def variants(srv, tmp: Path):
    """(name, how to re-sign the server's certificate, rows): rows = case -> (host, known_hosts text)."""
    n = f"[127.0.0.1]:{srv.port}"
    plain = srv.public_line("ed25519").split(None, 1)[1]

    def ca(kind):
        return lambda: srv.ca_line(kind)

    sk_cert, sk_ca = sk_host_certificate(srv.host_public_blob("ed25519"), ("127.0.0.1",))
    return [
        ("ed25519 CA", None, lambda: plain_rows(srv, tmp)),
        (
            "RSA CA, rsa-sha2-512",
            {"ca_kind": "rsa", "algorithm": "rsa-sha2-512"},
            lambda: {
                "RSA CA signing with rsa-sha2-512": ("127.0.0.1", f"@cert-authority * {ca('rsa')()}\n"),
                "RSA CA (rsa-sha2-512), name not a principal": ("localhost", f"@cert-authority * {ca('rsa')()}\n"),
            },
        ),
        (
            "RSA CA, ssh-rsa (SHA-1)",
            {"ca_kind": "rsa", "algorithm": "ssh-rsa"},
            lambda: {
                "RSA CA signing with ssh-rsa (SHA-1)": ("127.0.0.1", f"@cert-authority * {ca('rsa')()}\n"),
                "RSA CA with ssh-rsa, plain key pinned": (
                    "127.0.0.1",
                    f"@cert-authority * {ca('rsa')()}\n{n} {plain}\n",
                ),
            },
        ),
        (
            "ECDSA CA, principals LOCALHOST and 127.0.0.*",
            {"ca_kind": "ecdsa", "principals": ("LOCALHOST", "127.0.0.*")},
            lambda: {
                "principal in upper case": ("localhost", f"@cert-authority * {ca('ecdsa')()}\n"),
                "principal as a wildcard": ("127.0.0.1", f"@cert-authority * {ca('ecdsa')()}\n"),
            },
        ),
        (
            "ECDSA CA, principal localhost",
            {"ca_kind": "ecdsa", "principals": ("localhost",)},
            lambda: {"host name in upper case": ("LOCALHOST", f"@cert-authority * {ca('ecdsa')()}\n")},
        ),
        (
            "sk-ssh-ed25519 CA",
            {"cert": sk_cert},
            lambda: {
                "FIDO CA (sk-ssh-ed25519)": ("127.0.0.1", f"@cert-authority * {sk_ca}\n"),
                "FIDO CA revoked": ("127.0.0.1", f"@cert-authority * {sk_ca}\n@revoked * {sk_ca}\n"),
            },
        ),
    ]


KINDS = {  # OpenSSH's words -> mlops's words, per kind of refusal
    "changed": ("REMOTE HOST IDENTIFICATION HAS CHANGED", "does NOT match"),
    "revoked": ("marked as revoked", "@revoked"),
    "not known": ("host key is known for", "is not in the pinned known_hosts"),
}


def kind_of(text: str, side: int) -> str:
    return next((k for k, words in KINDS.items() if words[side] in text), "?")


def openssh(srv, host: str, known: Path, *options: str) -> tuple[bool, str]:
    cp = subprocess.run(
        ["ssh", *options, "-F", "/dev/null", "-o", f"UserKnownHostsFile={known}", "-o",
         "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o",
         "IdentitiesOnly=yes", "-i", str(srv.client_key_path), "-o", "ConnectTimeout=10", "-p", str(srv.port),
         f"{srv.user}@{host}", "true"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert cp.returncode == 0 or "Host key verification failed" in cp.stderr, cp.stderr
    return cp.returncode == 0, cp.stderr


def mlops_login(srv, host: str, known: Path) -> tuple[bool, str]:
    env = {"HPC_SSH_PRIVATE_KEY": str(srv.client_key_path)}
    try:
        with Session(Endpoint(host, srv.port, srv.user), "key", env=env, known=known) as s:
            s.run("true", timeout=30)
    except HostKeyRefused as exc:
        return False, str(exc)
    return True, ""


@pytest.fixture(scope="module")
def check_project(tmp_path_factory, server):
    return render(
        tmp_path_factory.mktemp("khcheck"),
        hpc_host="127.0.0.1",
        hpc_port=str(server.port),
        hpc_user=server.user,
        hpc_auth="key",
        wandb_mode="disabled",
    )


def check_credentials(project: Path, srv, host: str, known: Path) -> str:
    """`mlops check-credentials --online` with `known` as the project's .gitlab/known_hosts."""
    toml = project / "mlops.toml"
    toml.write_text(re.sub(r'(?m)^host = ".*"$', f'host = "{host}"', toml.read_text()))
    (project / ".gitlab" / "known_hosts").write_bytes(known.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPC_", "CI", "GITLAB", "WANDB"))}
    env.update(PYTHONPATH=str(project / "src"), HPC_SSH_PRIVATE_KEY=str(srv.client_key_path))
    cp = subprocess.run(
        [sys.executable, "-m", "mlops", "check-credentials", "--online"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def test_known_hosts_decisions_equal_openssh(server, check_project, tmp_path):
    rows, wrong = [], []
    for variant, setup, make_rows in variants(server, tmp_path):
        if setup is not None:
            server.set_host_certificate(**setup)
        for case, (host, text) in make_rows().items():
            known = tmp_path / f"kh-{len(rows)}"
            known.write_bytes(text.encode())
            oracle, why_openssh = openssh(server, host, known)
            login, why = mlops_login(server, host, known)
            out = check_credentials(check_project, server, host, known)
            online = "[PASS] SSH login" in out
            offline = re.search(r"\[(\w+)\] known_hosts entry for the login node ", out).group(1)
            kinds = "" if oracle else f" kind: openssh={kind_of(why_openssh, 0)} mlops={kind_of(why, 1)}"
            rows.append(
                f"{variant[:12]:12} {case[:52]:52} openssh={oracle!s:5} login={login!s:5} "
                f"check --online={online!s:5} offline={offline}{kinds}"
            )
            if not (oracle == login == online) or (oracle and offline != "PASS"):
                wrong.append(f"{rows[-1]}\n    {why}\n    {why_openssh[-600:]}\n    {out}")
            elif not oracle and kind_of(why_openssh, 0) != kind_of(why, 1):
                wrong.append(f"{rows[-1]}\n    mlops: {why}\n    openssh: {why_openssh[-600:]}")
    print("\n" + "\n".join(rows))
    assert not wrong, "\n".join(wrong)
    assert sum("openssh=True" in r for r in rows) >= 20 and sum("openssh=False" in r for r in rows) >= 15


def test_the_algorithm_openssh_would_negotiate_is_negotiated(server, tmp_path):
    """The order of offered host-key algorithms is OpenSSH's (order_hostkeyalgs): pinned types first."""
    server.set_host_certificate("ed25519", principals=("127.0.0.1",))
    known = tmp_path / "kh"
    env = {"HPC_SSH_PRIVATE_KEY": str(server.client_key_path)}
    cases = (
        ("ecdsa", "ecdsa-sha2-nistp256"),
        ("rsa", "rsa-sha2-512"),
        ("ed25519", "ssh-ed25519-cert-v01@openssh.com"),  # an ed25519 pin keeps OpenSSH's list: certs first
    )
    for kind, algorithm in cases:
        known.write_text(server.public_line(kind) + "\n")
        with Session(Endpoint("127.0.0.1", server.port, server.user), "key", env=env, known=known) as s:
            assert s.transport.host_key_type == algorithm
        _, debug = openssh(server, "127.0.0.1", known, "-v")
        assert f"kex: host key algorithm: {algorithm}" in debug, debug
    known.write_text(f"@cert-authority * {server.ca_public_line}\n")
    with Session(Endpoint("127.0.0.1", server.port, server.user), "key", env=env, known=known) as s:
        assert s.transport.host_key_type == "ssh-ed25519-cert-v01@openssh.com"


def test_login_without_the_pinned_file_names_the_fix(server, tmp_path):
    env = {"HPC_SSH_PRIVATE_KEY": str(server.client_key_path)}
    missing = tmp_path / ".gitlab" / "known_hosts"
    with pytest.raises(Exception, match=r"known_hosts: missing\. The cluster's host key is pinned in the repository"):
        Session(Endpoint("127.0.0.1", server.port, server.user), "key", env=env, known=missing).open()
    missing.parent.mkdir()
    missing.write_text("# only comments\n")
    with pytest.raises(HostKeyRefused, match="is not in the pinned known_hosts") as info:
        Session(Endpoint("127.0.0.1", server.port, server.user), "key", env=env, known=missing).open()
    assert f"ssh-keygen -F '[127.0.0.1]:{server.port}' >> {missing}" in str(info.value)
