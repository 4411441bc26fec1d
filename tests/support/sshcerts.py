"""OpenSSH certificates that ssh-keygen cannot make here: a host certificate signed by a FIDO CA
(sk-ssh-ed25519@openssh.com), built per PROTOCOL.certkeys and PROTOCOL.u2f with a software key standing in
for the authenticator. OpenSSH itself verifies what this makes (ssh-keygen -L, sshd HostCertificate, the
ssh client), so it serves as a test input for mlops.ssh.certificates.

    cert, ca_line = sk_host_certificate(host_public_blob, ("127.0.0.1",))
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SK_ED25519 = b"sk-ssh-ed25519@openssh.com"


def _s(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def sk_host_certificate(host_public_blob: bytes, principals=("127.0.0.1",), application=b"ssh:") -> tuple[bytes, str]:
    """(certificate blob, `TYPE BASE64` of the CA) for an ssh-ed25519 host key blob."""
    (n,) = struct.unpack(">I", host_public_blob[:4])
    if host_public_blob[4 : 4 + n] != b"ssh-ed25519":
        raise ValueError("an ssh-ed25519 host key is needed")
    host_pk = host_public_blob[4 + n + 4 :]
    ca = ed25519.Ed25519PrivateKey.generate()
    raw = ca.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ca_blob = _s(SK_ED25519) + _s(raw) + _s(application)
    body = _s(b"ssh-ed25519-cert-v01@openssh.com") + _s(os.urandom(32)) + _s(host_pk)
    body += struct.pack(">QI", 1, 2) + _s(b"mlops-test-host") + _s(b"".join(_s(p.encode()) for p in principals))
    body += struct.pack(">QQ", 0, 2**64 - 1) + _s(b"") + _s(b"") + _s(b"") + _s(ca_blob)
    flags_counter = b"\x01" + struct.pack(">I", 7)  # user present; a counter
    signed = hashlib.sha256(application).digest() + flags_counter + hashlib.sha256(body).digest()
    signature = _s(SK_ED25519) + _s(ca.sign(signed)) + flags_counter
    return body + _s(signature), f"{SK_ED25519.decode()} {base64.b64encode(ca_blob).decode()}"
