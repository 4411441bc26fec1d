"""The SSH room's pure parts, without a server: known_hosts parsing and matching as OpenSSH 9.2's hostfile.c,
the host-key decision and algorithm order (hostkeys.py), host certificates (certificates.py), code timing,
credential sources in messages, output framing, the resolver scrub, the Endpoint parser. (The same
decisions over a real sshd, against the OpenSSH client as the oracle, are in tests/infra/test_ssh_login.py;
the prompt table in test_ssh_prompts.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlops.errors import BadInput
from mlops.ssh import Endpoint, HostKeyRefused, certificates, codes, frame, hostkeys, known_hosts, resolver, sources
from support.sshcerts import sk_host_certificate

NAME = "[hpc.example.org]:2222"
HOST, PORT = "hpc.example.org", 2222
ED, ED_CERT = "ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"


def pub(kind="ed25519") -> tuple[str, bytes]:
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return line, base64.b64decode(line.split()[1])


def verify(text, algorithm, blob, host=HOST, port=PORT, now=None):
    return hostkeys.verify(known_hosts.parse(text), host, port, algorithm, blob, now=now)


def offer(text, supported=hostkeys.HOST_KEY_ALGORITHMS):
    return hostkeys.offer(known_hosts.parse(text), HOST, PORT, supported)


def test_every_key_of_every_matching_line_counts():
    (a, _), (b, blob_b) = pub(), pub("ecdsa")
    assert verify(f"{NAME} {a}\n# comment\n\n{NAME} {b}\n", "ecdsa-sha2-nistp256", blob_b).startswith("pinned")


def test_algorithms_are_offered_in_openssh_order():
    """order_hostkeyalgs: an ed25519 pin keeps OpenSSH's list (certificates first); otherwise the pinned
    types (and with a @cert-authority line, every certificate type) come first."""
    (ed_line, _), (ec_line, _) = pub(), pub("ecdsa")
    assert offer(f"{NAME} {ed_line}\n") == list(hostkeys.HOST_KEY_ALGORITHMS)
    ecdsa_first = offer(f"{NAME} {ec_line}\n")
    assert ecdsa_first[:2] == ["ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp256"]
    assert sorted(ecdsa_first) == sorted(hostkeys.HOST_KEY_ALGORITHMS)
    with_ca = offer(f"@cert-authority * {ed_line}\n{NAME} {ec_line}\n")
    assert with_ca[:8] == [a for a in hostkeys.HOST_KEY_ALGORITHMS if a.endswith("-cert-v01@openssh.com")]
    assert with_ca[8] == "ecdsa-sha2-nistp256"
    revoked_ed = offer(f"{NAME} {ed_line}\n@revoked * {ed_line}\n{NAME} {ec_line}\n")  # a revoked pin is no pin
    assert revoked_ed[1] == "ecdsa-sha2-nistp256"
    assert offer(f"{NAME} {ec_line}\n", {"ssh-ed25519", "ecdsa-sha2-nistp256"}) == ["ecdsa-sha2-nistp256", ED]


def test_port_less_name_only_when_host_port_pins_nothing_for_the_key():
    """OpenSSH's "checking without port identifier" runs only when [host]:port is HOST_NEW for the key."""
    (right, blob), (other, _), (ecdsa, _) = pub(), pub(), pub("ecdsa")
    assert verify(f"{HOST} {right}\n", ED, blob).endswith("(under the name hpc.example.org)")
    for pinned in (other, ecdsa):  # a different key, of the same type or another type: HOST_CHANGED
        with pytest.raises(HostKeyRefused, match=r"of \[hpc.example.org\]:2222 does NOT match"):
            verify(f"{NAME} {pinned}\n{HOST} {right}\n", ED, blob)


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
        ("HPC.EXAMPLE.ORG", "hpc.example.org", True),
        ("[hpc.example.org]", NAME, False),
        ("h[a-z]c.example.org", "hpc.example.org", False),  # brackets are literal, not a character class
        ("hpc.example.org\x0bother", "hpc.example.org", False),  # \v is no separator
        ("hpc.example.org,,", "hpc.example.org", True),
    ],
)
def test_host_patterns(field, name, hit):
    assert known_hosts.host_matches(field, name) is hit


def test_hashed_names_compare_as_openssh_encodes_them():
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, NAME.encode(), hashlib.sha1).digest()
    field = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    assert known_hosts.host_matches(field, NAME)
    assert not known_hosts.host_matches(field, "[other]:2222")
    assert not known_hosts.host_matches("|1|not base64|x", NAME)
    assert not known_hosts.host_matches(field.rstrip("="), NAME)  # not OpenSSH's encoding: no match
    short = f"|1|{base64.b64encode(salt[:10]).decode()}|{base64.b64encode(digest).decode()}"
    assert not known_hosts.host_matches(short, NAME)  # host_hash() wants a 20-byte salt


def test_lines_are_read_as_hostfile_c_reads_them():
    line, blob = pub()
    kind, b64 = line.split()
    lines = {
        "garbage": "garbage",
        "unknown marker": f"@bogus {NAME} {line}",
        "upper-case marker": f"@Revoked {NAME} {line}",
        "two markers": f"@cert-authority @revoked * {line}",
        "not base64": f"{NAME} ssh-ed25519 !!!notbase64",
        "no key": f"{NAME} ssh-ed25519",
        "unknown type": f"{NAME} ssh-foo {b64}",
        "wrong type for the blob": f"{NAME} ecdsa-sha2-nistp256 {b64}",
        "marker ended by TAB, later space": f"@revoked\t{NAME} {line}",
        "vertical tab separator": f"{NAME}\x0b{line}",
    }
    text = "\r\n".join(lines.values()) + f"\r\n{NAME}\t {kind}  \t{b64} comment\r\n"
    parsed = known_hosts.parse(text, "kh")
    assert [e.blob for e in parsed.entries] == [blob]  # CRLF: the CR stays in the line, base64 skips it
    assert len(parsed.warnings) == len(lines)  # \v is part of the host field: the key type is then missing
    assert all(w.startswith("kh line ") for w in parsed.warnings) and b64[:20] not in " ".join(parsed.warnings)
    tabs_only = known_hosts.parse(f"@revoked\t{NAME}\t{kind}\t{b64}\n")  # the marker ends at the first TAB
    assert [(e.marker, e.hosts) for e in tabs_only.entries] == [("@revoked", NAME)]
    space_then_tab = known_hosts.parse(f"@revoked \t{NAME} {kind} {b64}\n")
    assert [e.marker for e in space_then_tab.entries] == ["@revoked"]
    cr_only = known_hosts.parse(f"{NAME} {line}\r{NAME} {line}\r")  # one line for OpenSSH (no \n) ...
    assert cr_only.entries == [] and len(cr_only.warnings) == 1  # ... whose key runs into the next "line"


def test_revoked_applies_wherever_it_appears():
    (a, blob_a), (b, blob_b) = pub(), pub()
    text = f"{NAME} {a}\n{NAME} {b}\n@revoked * {a}\n"
    with pytest.raises(HostKeyRefused, match="is marked @revoked in known_hosts line 3"):
        verify(text, ED, blob_a)
    assert verify(text, ED, blob_b)


def test_refusals_name_the_case_and_the_fix():
    (a, _), (_, other) = pub(), pub()
    with pytest.raises(HostKeyRefused, match="does NOT match the one pinned in known_hosts line 1"):
        verify(f"{NAME} {a}\n", ED, other)
    with pytest.raises(HostKeyRefused, match="is not in the pinned known_hosts") as info:
        verify(f"other {a}\n", ED, other)
    assert "ssh-keygen -F '[hpc.example.org]:2222' >> known_hosts" in str(info.value)


def keygen(*args, cwd):
    subprocess.run(["ssh-keygen", "-q", *args], check=True, capture_output=True, cwd=cwd)


def certificate(tmp_path, ca_kind="ed25519", sig="", principals="hpc.example.org", validity="-5m:+1h"):
    """An ed25519 host key with a certificate from a CA of `ca_kind`, signed with `sig` (ssh-keygen -t)."""
    ca = tmp_path / f"ca-{ca_kind}"
    if not ca.exists():
        keygen("-t", ca_kind, "-N", "", "-f", str(ca), cwd=tmp_path)
    host = tmp_path / "host"
    for p in (host, tmp_path / "host.pub", tmp_path / "host-cert.pub"):
        p.unlink(missing_ok=True)
    keygen("-t", "ed25519", "-N", "", "-f", str(host), cwd=tmp_path)
    keygen("-s", str(ca), *(["-t", sig] if sig else []), "-I", "h", "-h", "-n", principals, "-V", validity,
           str(tmp_path / "host.pub"), cwd=tmp_path)  # fmt: skip
    cert = base64.b64decode((tmp_path / "host-cert.pub").read_text().split()[1])
    plain = " ".join((tmp_path / "host.pub").read_text().split()[:2])
    return cert, " ".join(ca.with_suffix(".pub").read_text().split()[:2]), plain


def test_certificates_are_parsed_and_checked_as_openssh_does(tmp_path):
    cert, ca, plain = certificate(tmp_path)
    fields = certificates.parse(cert)
    assert fields.cert_type == 2 and fields.principals == ("hpc.example.org",) and fields.signature_type == ED
    text = f"@cert-authority *.example.org,{NAME} {ca}\n"
    assert verify(text, ED_CERT, cert).startswith("certificate signed by CA")
    assert verify(text, ED_CERT, cert, host="HPC.example.org")  # ssh lower-cases the name, then compares exactly
    with pytest.raises(HostKeyRefused, match="name is not a listed principal"):
        verify(text.replace("*.example.org", "*"), ED_CERT, cert, host="login2.example.org")
    with pytest.raises(HostKeyRefused, match="expired"):
        verify(text, ED_CERT, cert, now=fields.valid_before + 1)
    with pytest.raises(HostKeyRefused, match="not in the pinned known_hosts .*its CA is not trusted"):
        verify(f"@cert-authority other {ca}\n", ED_CERT, cert)
    assert verify(f"@cert-authority other {ca}\n{NAME} {plain}\n", ED_CERT, cert).startswith("pinned")  # plain key
    with pytest.raises(HostKeyRefused, match="which is marked @revoked in known_hosts line 2: a revoked CA"):
        verify(f"@cert-authority * {ca}\n@revoked * {ca}\n{NAME} {plain}\n", ED_CERT, cert)  # no plain-key retry
    forged = bytearray(cert)
    forged[-5] ^= 1  # inside the CA signature: OpenSSH fails the key exchange, whatever else is pinned
    with pytest.raises(HostKeyRefused, match="does not verify"):
        verify(f"{text}{NAME} {plain}\n", ED_CERT, bytes(forged))


@pytest.mark.parametrize(
    "ca_kind, sig, allowed",
    [("rsa", "rsa-sha2-512", True), ("rsa", "rsa-sha2-256", True), ("rsa", "ssh-rsa", False), ("ecdsa", "", True)],
)
def test_ca_signature_algorithms_are_openssh_defaults(tmp_path, ca_kind, sig, allowed):
    cert, ca, plain = certificate(tmp_path, ca_kind, sig)
    parsed = certificates.parse(cert)
    assert parsed.signature_type == (sig or "ecdsa-sha2-nistp256") and certificates.signature_verifies(parsed)
    if allowed:
        assert verify(f"@cert-authority * {ca}\n", ED_CERT, cert).startswith("certificate signed by CA")
    else:
        with pytest.raises(HostKeyRefused, match=r"signed with disallowed algorithm \(ssh-rsa\)"):
            verify(f"@cert-authority * {ca}\n", ED_CERT, cert)
        assert verify(f"@cert-authority * {ca}\n{NAME} {plain}\n", ED_CERT, cert).startswith("pinned")


def test_principals_are_compared_exactly(tmp_path):
    cert, ca, _ = certificate(tmp_path, principals="HPC.example.org,*.example.org")
    for host in ("hpc.example.org", "HPC.example.org", "login.example.org"):
        with pytest.raises(HostKeyRefused, match="name is not a listed principal"):
            verify(f"@cert-authority * {ca}\n", ED_CERT, cert, host=host)


def test_sk_ca_signature_verifies_per_protocol_u2f(tmp_path):
    """A certificate signed by a FIDO (sk-ssh-ed25519) CA, made by support.sshcerts per PROTOCOL.u2f; ssh-keygen -L
    (which verifies the CA signature when it loads a certificate) is the oracle that it is well-formed."""
    _, host_blob = pub()
    cert, ca_line = sk_host_certificate(host_blob, ("hpc.example.org",))
    (tmp_path / "sk-cert.pub").write_text(f"{ED_CERT} {base64.b64encode(cert).decode()}\n")
    out = subprocess.run(["ssh-keygen", "-L", "-f", str(tmp_path / "sk-cert.pub")], capture_output=True, text=True)
    assert out.returncode == 0 and "Signing CA: ED25519-SK" in out.stdout, out.stderr
    parsed = certificates.parse(cert)
    assert parsed.signature_type == "sk-ssh-ed25519@openssh.com" and certificates.signature_verifies(parsed)
    assert verify(f"@cert-authority * {ca_line}\n", ED_CERT, cert).startswith("certificate signed by CA")
    broken = bytearray(cert)
    broken[-1] ^= 1  # the counter is signed too
    assert not certificates.signature_verifies(certificates.parse(bytes(broken)))


def test_code_timing_makes_the_retry_able_to_succeed():
    assert codes.choose_step(100.0) == 3
    assert codes.choose_step(119.9, last_step=3) == 4  # never a step this process already sent
    assert codes.choose_step(185.0, last_step=3) == 6
    now = [89.0]  # first code in step 2, typed at 89.0
    src = codes.SecretCodes(b"12345678901234567890", "test", clock=lambda: now[0])
    first = src.code()
    now[0] = 92.0
    assert src.retry_delay() == pytest.approx(27.0)  # the retry waits until 30 s after the refused code
    now[0] += src.retry_delay()
    assert src.code() != first and src.sent_step == 3  # 119.0: the next step's code, 30 s later
    typed = codes.TypedCode("123456", "HPC_OTP")
    assert not typed.retryable and typed.retry_delay() == 0


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


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_frame_drops_shell_output_before_the_marker_at_any_chunk_size(chunk):
    f = frame.Frame()
    payload = os.urandom(5000) + f.marker.encode() + b"\n" + b"\x00\xff" * 100  # binary, even marker-like
    raw = b"Disk quota: 95%\nModule intel loaded\n" + f.marker.encode() + b"\n" + payload
    out = io.BytesIO()
    unframe = f.stdout(out.write)
    for i in range(0, len(raw), chunk):
        unframe.write(raw[i : i + chunk])
    unframe.close()
    assert out.getvalue() == payload and unframe.found and unframe.noise == 36
    assert f.stderr(b"module: warning\n" + f.marker.encode() + b"\nreal error\n") == b"real error\n"
    assert f"printf '%s\\n' {f.marker};" in f.wrap("squeue -u x") and f.wrap("squeue -u x").endswith("; squeue -u x")


def test_frame_without_marker_is_all_noise():
    f = frame.Frame()
    unframe = f.stdout(io.BytesIO().write)
    unframe.write(b"This account is locked\n")
    unframe.close()
    assert not unframe.found and unframe.noise == 23 and unframe.noise_head == b"This account is locked\n"
    assert frame.Frame().marker != f.marker


def test_resolver_variables_are_removed():
    env = {"LOCALDOMAIN": "attacker.test", "RES_OPTIONS": "ndots:9", "HOSTALIASES": "/tmp/x", "PATH": "/bin"}
    assert resolver.scrub(env) == ["LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"] and env == {"PATH": "/bin"}


def test_endpoint_parser_refuses_without_a_traceback():
    assert Endpoint.parse("bob@jump.example.org:2200", "alice") == Endpoint("jump.example.org", 2200, "bob")
    assert Endpoint.parse("jump", "alice") == Endpoint("jump", 22, "alice")
    assert Endpoint.parse("[::1]:2200", "a") == Endpoint("::1", 2200, "a")
    assert Endpoint("h", 2222).known_hosts_name == "[h]:2222" and Endpoint("H", 22).known_hosts_name == "h"
    for bad in ("jump:ssh", "jump:0", "jump:99999", "@:22", "u@"):
        with pytest.raises(BadInput, match="clusters.NAME.jump_host"):
            Endpoint.parse(bad, "a")
