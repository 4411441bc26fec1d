"""The SSH room's pure parts, without a server: known_hosts semantics, prompt classes, code choice,
credential sources in messages, the Endpoint parser. (The same decisions over a real sshd, against the
OpenSSH client as the oracle, are in tests/test_ssh_login.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlops.errors import BadInput
from mlops.ssh import codes, known_hosts, prompts, sources
from mlops.ssh.session import Endpoint

NAME = "[hpc.example.org]:2222"


def pub(kind="ed25519") -> tuple[str, bytes]:
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return line, base64.b64decode(line.split()[1])


def pins(text, host="hpc.example.org", port=2222):
    return known_hosts.lookup(known_hosts.parse(text), host, port)


def test_every_key_of_every_matching_line_counts():
    (a, blob_a), (b, blob_b) = pub(), pub("ecdsa")
    p = pins(f"{NAME} {a}\n# comment\n\n{NAME} {b}\n")
    assert [e.blob for e in p.usable] == [blob_a, blob_b]
    assert p.algorithms({"ssh-ed25519", "ecdsa-sha2-nistp256"}) == ["ssh-ed25519", "ecdsa-sha2-nistp256"]
    assert known_hosts.verify(p, "hpc.example.org", "ecdsa-sha2-nistp256", blob_b).startswith("pinned")


def test_only_pinned_types_are_offered():
    line, _ = pub("ecdsa")
    assert pins(f"{NAME} {line}\n").algorithms({"ssh-ed25519", "ecdsa-sha2-nistp256"}) == ["ecdsa-sha2-nistp256"]
    rsa = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQC" + "A" * 40
    p = known_hosts.parse(f"{NAME} ssh-rsa {rsa}\n")
    if p.entries:  # a syntactically valid rsa blob maps to the rsa-sha2 signature algorithms
        assert pins(f"{NAME} ssh-rsa {rsa}\n").algorithms({"rsa-sha2-512", "rsa-sha2-256"})[0] == "rsa-sha2-512"


def test_port_less_name_only_when_host_port_pins_no_plain_key():
    """OpenSSH's "checking without port identifier" runs only when [host]:port pins no plain key (HOST_NEW).
    A pinned key there of any type that is not the server's is a changed key, whatever the bare name pins;
    OpenSSH 9.2 refuses it too when it negotiates the plain key (see STRICTER in tests/test_ssh_login.py)."""
    (right, blob), (other, _), (ecdsa, _) = pub(), pub(), pub("ecdsa")
    p = pins(f"hpc.example.org {right}\n")
    assert known_hosts.verify(p, "hpc.example.org", "ssh-ed25519", blob).endswith("(under the name hpc.example.org)")
    for pinned in (other, ecdsa):  # a different key, of the same type or of another type (HOST_CHANGED)
        p = pins(f"{NAME} {pinned}\nhpc.example.org {right}\n")
        with pytest.raises(known_hosts.HostKeyRefused, match=r"of \[hpc.example.org\]:2222 does NOT match"):
            known_hosts.verify(p, "hpc.example.org", "ssh-ed25519", blob)
    # no @cert-authority line: no certificate algorithm is offered, so OpenSSH's certificate path (which
    # never compares the plain key with the [host]:port pin) cannot be taken
    supported = {"ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"}
    assert pins(f"{NAME} {other}\nhpc.example.org {right}\n").algorithms(supported) == ["ssh-ed25519"]


@pytest.mark.parametrize(
    "field, name, hit",
    [
        ("hpc.example.org,[hpc.example.org]:2222", NAME, True),
        ("[HPC.Example.ORG]:2222", NAME, True),
        ("[*.example.org]:2222", NAME, True),
        ("[hpc.example.or?]:2222", NAME, True),
        ("*,![hpc.example.org]:2222", NAME, False),
        ("[*.example.org]:*,!*:2222", NAME, False),
        ("hpc.example.org", NAME, False),  # port 2222 is written [host]:port
        ("[hpc.example.org]:22", NAME, False),
        ("hpc.example.org", "hpc.example.org", True),
        ("[hpc.example.org]", NAME, False),
    ],
)
def test_host_patterns(field, name, hit):
    assert known_hosts.host_matches(field, name) is hit


def test_hashed_names():
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, NAME.encode(), hashlib.sha1).digest()
    field = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    assert known_hosts.host_matches(field, NAME)
    assert not known_hosts.host_matches(field, "[other]:2222")
    assert not known_hosts.host_matches("|1|not base64|x", NAME)


def test_malformed_lines_are_skipped_with_a_warning_and_crlf_and_tabs_are_fine():
    line, blob = pub()
    kind, b64 = line.split()
    text = f"garbage\r\n@bogus {NAME} {line}\r\n{NAME} ssh-ed25519 !!!notbase64\r\n{NAME}\t {kind}  \t{b64} comment\r\n"
    parsed = known_hosts.parse(text, "kh")
    assert [e.blob for e in parsed.entries] == [blob]
    assert len(parsed.warnings) == 3 and all(w.startswith("kh line ") for w in parsed.warnings)
    assert b64[:20] not in " ".join(parsed.warnings)


def test_revoked_applies_wherever_it_appears():
    (a, blob_a), (b, blob_b) = pub(), pub()
    p = pins(f"{NAME} {a}\n{NAME} {b}\n@revoked * {a}\n")
    assert [e.blob for e in p.usable] == [blob_b]
    with pytest.raises(known_hosts.HostKeyRefused, match="@revoked"):
        known_hosts.verify(p, "hpc.example.org", "ssh-ed25519", blob_a)
    assert known_hosts.verify(p, "hpc.example.org", "ssh-ed25519", blob_b)


def test_refusals_name_the_case():
    (a, _), (_, other) = pub(), pub()
    with pytest.raises(known_hosts.HostKeyRefused, match="does NOT match the pinned one"):
        known_hosts.verify(pins(f"{NAME} {a}\n"), "hpc.example.org", "ssh-ed25519", other)
    with pytest.raises(known_hosts.HostKeyRefused, match="is not in the pinned known_hosts"):
        known_hosts.verify(pins(f"other {a}\n"), "hpc.example.org", "ssh-ed25519", other)


def test_certificates_are_parsed_and_checked(tmp_path):
    for name in ("ca", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)], check=True)
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-s",
            str(tmp_path / "ca"),
            "-I",
            "h",
            "-h",
            "-n",
            "hpc.example.org",
            "-V",
            "-5m:+1h",
            str(tmp_path / "host.pub"),
        ],
        check=True,
        capture_output=True,
    )
    cert = base64.b64decode((tmp_path / "host-cert.pub").read_text().split()[1])
    ca = " ".join((tmp_path / "ca.pub").read_text().split()[:2])
    fields = known_hosts.parse_certificate(cert)
    assert fields["type"] == 2 and fields["principals"] == ["hpc.example.org"]
    p = pins(f"@cert-authority *.example.org,{NAME} {ca}\n")
    alg = "ssh-ed25519-cert-v01@openssh.com"
    assert alg in p.algorithms({alg, "ssh-ed25519"})
    assert known_hosts.verify(p, "hpc.example.org", alg, cert).startswith("certificate signed by CA")
    with pytest.raises(known_hosts.HostKeyRefused, match="not valid for the name"):
        known_hosts.verify(p, "login2.example.org", alg, cert)
    with pytest.raises(known_hosts.HostKeyRefused, match="expired or not yet valid"):
        known_hosts.verify(p, "hpc.example.org", alg, cert, now=fields["valid_before"] + 1)
    with pytest.raises(known_hosts.HostKeyRefused, match="no @cert-authority"):
        known_hosts.verify(pins(f"@cert-authority other {ca}\n{NAME} {pub()[0]}\n"), "hpc.example.org", alg, cert)
    with pytest.raises(known_hosts.HostKeyRefused, match="@revoked"):
        known_hosts.verify(
            pins(f"@cert-authority * {ca}\n@revoked * {ca}\n{NAME} {pub()[0]}\n"), "hpc.example.org", alg, cert
        )
    forged = bytearray(cert)
    forged[-5] ^= 1  # inside the CA signature
    with pytest.raises(known_hosts.HostKeyRefused, match="does not verify"):
        known_hosts.verify(p, "hpc.example.org", alg, bytes(forged))


@pytest.mark.parametrize(
    "prompt, kind",
    [
        ("Verification code: ", prompts.CODE),
        ("Your OTP: ", prompts.CODE),
        ("Token:", prompts.CODE),
        ("One-time password (OATH) for `jdoe': ", prompts.CODE),
        ("OTP", prompts.CODE),
        ("TOTP: ", prompts.CODE),
        ("2FA code:", prompts.CODE),
        ("Enter PASSCODE:", prompts.CODE),
        ("Password: ", prompts.PASSWORD),
        ("Service password: ", prompts.PASSWORD),
        ("jdoe@hpc's password:", prompts.PASSWORD),
        ("Do you accept the terms? (yes/no)", prompts.OTHER),
        ("", prompts.OTHER),
    ],
)
def test_prompt_classes(prompt, kind):
    assert prompts.classify(prompt) == kind


class FixedCodes(codes.Codes):
    kind, retryable = "secret", True

    def code(self):
        return "123456"


def test_answers_go_only_to_their_prompts():
    ok = prompts.Answerer(lambda: FixedCodes("test"), "pw", "totp+password", "hpc")
    assert ok("", "", [("Your OTP: ", False), ("Password: ", False)]) == ["123456", "pw"]
    assert ok("", "", [("Password: ", False)]) == ["pw"] and ok("", "", []) == []
    assert ok.answered == [prompts.CODE, prompts.PASSWORD, prompts.PASSWORD]
    plain = prompts.Answerer(lambda: FixedCodes("test"), None, "totp", "hpc")
    with pytest.raises(prompts.PromptRefused, match="asked for a password") as info:
        plain("", "", [("Your OTP: ", False), ("Password:\x1b[31m ", False)])  # checked before typing anything
    assert plain.answered == [] and "\x1b" not in str(info.value) and "totp+password" in str(info.value)
    with pytest.raises(prompts.PromptRefused, match="neither a one-time code nor a password"):
        plain("", "", [("Enter your mother's maiden name " + "x" * 500, False)])
    assert len(str(plain.stopped)) < 500


def test_code_choice_never_sends_a_refused_step_again():
    assert codes.choose_step(100.0) == 3
    assert codes.choose_step(119.9, refused_step=3) == 4  # retry in the same step: the next step's code
    assert codes.choose_step(121.0, refused_step=3) == 4
    assert codes.choose_step(185.0, refused_step=3) == 6
    now = [29.9]
    src = codes.SecretCodes(b"12345678901234567890", "test", clock=lambda: now[0])
    first = src.code()
    src.refused()
    assert src.code() != first and src.sent_step == 1


def test_totp_matches_rfc6238():
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # pragma: allowlist secret (RFC 6238 test vector)
    assert codes.totp_now(secret, at=59) == "287082"
    assert codes.totp_now(secret, at=1111111109) == "081804"


def test_code_sources_and_their_messages():
    typed = codes.from_env({"HPC_OTP": " 123456 "}, stdin=None)
    assert typed.kind == "typed" and not typed.retryable and typed.code() == "123456"
    with pytest.raises(codes.CodeProblem, match="HPC_OTP"):
        codes.from_env({}, stdin=None)
    with pytest.raises(codes.CodeProblem, match=r"HPC_OTP \(set, 9 characters\)") as info:
        codes.from_env({"HPC_OTP": "/tmp/x/y" + "1"}, stdin=None)
    assert "/tmp" not in str(info.value)
    with pytest.raises(codes.CodeProblem, match=r"HPC_TOTP_SECRET \(holds 2 lines") as info:
        codes.from_env({"HPC_TOTP_SECRET": "CANARYXX1\nCANARYXX2"}, stdin=None)
    assert "CANARY" not in str(info.value)


def test_sources_never_show_a_value(tmp_path):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    assert (
        sources.describe("HPC_SSH_PRIVATE_KEY", {"HPC_SSH_PRIVATE_KEY": key})
        == f"HPC_SSH_PRIVATE_KEY (holds key text, {len(key)} bytes)"
    )
    path = tmp_path / "id"
    path.write_text("x")
    assert (
        sources.describe("HPC_SSH_PRIVATE_KEY", {"HPC_SSH_PRIVATE_KEY": str(path)})
        == f"HPC_SSH_PRIVATE_KEY (file {path})"
    )
    assert "SECRETPATH" not in sources.describe("HPC_SSH_PRIVATE_KEY", {"HPC_SSH_PRIVATE_KEY": "/SECRETPATH"})
    assert (
        sources.describe("HPC_TOTP_SECRET", {"HPC_TOTP_SECRET": str(path)})
        == f"HPC_TOTP_SECRET (set, {len(str(path))} characters)"
    )
    assert sources.describe("HPC_PASSWORD", {}) == "HPC_PASSWORD (not set)"
    assert sources.sanitize("a\x00b\x1b[2Jc" + "d" * 500, 20) == "a b [2Jcddddddddd..."


def test_endpoint_parser_refuses_without_a_traceback():
    assert Endpoint.parse("bob@jump.example.org:2200", "alice") == Endpoint("jump.example.org", 2200, "bob")
    assert Endpoint.parse("jump", "alice") == Endpoint("jump", 22, "alice")
    assert Endpoint.parse("[::1]:2200", "a") == Endpoint("::1", 2200, "a")
    assert Endpoint("h", 2222).known_hosts_name == "[h]:2222" and Endpoint("H", 22).known_hosts_name == "h"
    for bad in ("jump:ssh", "jump:0", "jump:99999", "@:22", "u@"):
        with pytest.raises(BadInput, match="cluster.jump_host"):
            Endpoint.parse(bad, "a")
