"""OpenSSH host certificates: parsed (PROTOCOL.certkeys), CA signature verified with `cryptography`, and
checked the way the OpenSSH 9.2 client checks them (sshkey.c cert_parse, sshkey_cert_check_host).

The CA signature is verified here for every CA key type OpenSSH verifies (ssh-ed25519, ecdsa-sha2-*,
ssh-rsa with ssh-rsa/rsa-sha2-256/rsa-sha2-512 signatures, ssh-dss, sk-ssh-ed25519@openssh.com,
sk-ecdsa-sha2-nistp256@openssh.com per PROTOCOL.u2f), independent of paramiko's version (paramiko 3.4/4.x
accepted SHA-1 `ssh-rsa` CA signatures, 5.1 verifies none from an RSA CA). Then, as OpenSSH decides:
  * a signature that does not verify refuses the connection (OpenSSH fails the key exchange);
  * the signature algorithm must be in CA_SIGNATURE_ALGORITHMS (OpenSSH's default CASignatureAlgorithms:
    no SHA-1 `ssh-rsa`, no `ssh-dss`), the certificate a host certificate, valid now, without critical
    options, and the host name one of its principals, compared byte for byte (host certificates allow
    no wildcards; the ssh client compares the name lower-cased, as it lower-cases every non-address name).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

CA_SIGNATURE_ALGORITHMS = (  # myproposal.h SSH_ALLOWED_CA_SIGALGS (V_9_2_P1)
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
HOST_CERT = 2  # SSH2_CERT_TYPE_HOST
_KEY_FIELDS = {  # certificate type -> number of public key fields between the nonce and the serial
    "ssh-ed25519-cert-v01@openssh.com": 1,
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": 2,
    "ssh-rsa-cert-v01@openssh.com": 2,
}
_CURVES = {
    "nistp256": ("SECP256R1", "SHA256"),
    "nistp384": ("SECP384R1", "SHA384"),
    "nistp521": ("SECP521R1", "SHA512"),
}
_RSA_HASHES = {"ssh-rsa": "SHA1", "rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512"}
RSA_MIN_BITS = 1024  # SSH_RSA_MINIMUM_MODULUS_SIZE


def read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    """One RFC 4251 `string` at `pos`: (value, position after it). ValueError when truncated."""
    if pos + 4 > len(buf):
        raise ValueError("truncated")
    (n,) = struct.unpack(">I", buf[pos : pos + 4])
    if pos + 4 + n > len(buf):
        raise ValueError("truncated")
    return buf[pos + 4 : pos + 4 + n], pos + 4 + n


def strings(buf: bytes, count: int, pos: int = 0) -> tuple[list[bytes], int]:
    out = []
    for _ in range(count):
        value, pos = read_string(buf, pos)
        out.append(value)
    return out, pos


@dataclass(frozen=True)
class Certificate:
    """The fields of an OpenSSH certificate that the host check reads."""

    kind: str  # e.g. ssh-ed25519-cert-v01@openssh.com
    cert_type: int  # 1 user, 2 host
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical: bytes
    signature_key: bytes  # the CA's public key blob
    signature_type: str  # the CA signature's algorithm, e.g. rsa-sha2-512
    signed: bytes  # everything the CA signed
    signature: bytes
    key_blob: bytes  # the certified plain public key


def parse(blob: bytes) -> Certificate:
    """An OpenSSH certificate blob (PROTOCOL.certkeys). ValueError when malformed or of another type."""
    kind_b, pos = read_string(blob, 0)
    kind = kind_b.decode("latin-1")
    if kind not in _KEY_FIELDS:
        raise ValueError(f"unsupported certificate type {kind[:60]}")
    _nonce, pos = read_string(blob, pos)
    key_fields, pos = strings(blob, _KEY_FIELDS[kind], pos)
    if pos + 12 > len(blob):
        raise ValueError("truncated")
    _serial, cert_type = struct.unpack(">QI", blob[pos : pos + 12])
    (_key_id, packed), pos = strings(blob, 2, pos + 12)
    principals, p = [], 0
    while p < len(packed):
        name, p = read_string(packed, p)
        principals.append(name.decode("latin-1"))
    if pos + 16 > len(blob):
        raise ValueError("truncated")
    valid_after, valid_before = struct.unpack(">QQ", blob[pos : pos + 16])
    (critical, _extensions, _reserved, signature_key), pos = strings(blob, 4, pos + 16)
    signed = blob[:pos]
    signature, pos = read_string(blob, pos)
    if pos != len(blob):
        raise ValueError("trailing data after the signature")
    sig_type, _ = read_string(signature, 0)
    plain = kind.replace("-cert-v01@openssh.com", "")
    key_blob = b"".join(struct.pack(">I", len(x)) + x for x in [plain.encode(), *key_fields])
    return Certificate(
        kind,
        cert_type,
        tuple(principals),
        valid_after,
        valid_before,
        critical,
        signature_key,
        sig_type.decode("latin-1"),
        signed,
        signature,
        key_blob,
    )


def ssh_name(host: str) -> str:
    """The name the ssh client compares with principals: lower-cased (ASCII), unless it is an address."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return host.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def check_host(cert: Certificate, host: str, now: float) -> str | None:
    """Why OpenSSH refuses `cert` for `host` (sshkey_cert_check_host), or None when it is valid.

    The reasons are OpenSSH's own words. `host` is the name as given; it is compared as ssh_name(host).
    """
    if cert.cert_type != HOST_CERT:
        return "Certificate invalid: not a host certificate"
    if now < cert.valid_after:
        return "Certificate invalid: not yet valid"
    if now >= cert.valid_before:
        return "Certificate invalid: expired"
    if cert.principals and ssh_name(host) not in cert.principals:
        return "Certificate invalid: name is not a listed principal"
    if cert.critical:
        return "Certificate contains unsupported critical options"
    if cert.signature_type not in CA_SIGNATURE_ALGORITHMS:
        return f"Certificate signed with disallowed algorithm ({cert.signature_type})"
    return None


def signature_verifies(cert: Certificate) -> bool:
    """Does the CA signature on `cert` verify (any algorithm OpenSSH verifies, allowed or not)?"""
    try:
        return _verify(cert.signature_key, cert.signature, cert.signed)
    except (ValueError, TypeError, struct.error):
        return False


def _verify(key_blob: bytes, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa, utils

    key_type_b, pos = read_string(key_blob, 0)
    key_type = key_type_b.decode("latin-1")
    (sig_type_b, sig), spos = strings(signature, 2)
    sig_type = sig_type_b.decode("latin-1")
    if key_type.startswith("sk-"):  # PROTOCOL.u2f: flags and counter follow; the application is hashed in
        if sig_type != key_type or spos + 5 != len(signature):
            return False
        flags_counter = signature[spos : spos + 5]
    elif spos != len(signature):
        return False
    try:
        if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
            (pk, *app), _ = strings(key_blob, 2 if key_type.startswith("sk-") else 1, pos)
            if sig_type != key_type or len(pk) != 32 or len(sig) != 64:
                return False
            message = data if not app else _sk_message(app[0], flags_counter, data)
            ed25519.Ed25519PublicKey.from_public_bytes(pk).verify(sig, message)
            return True
        if key_type.startswith(("ecdsa-sha2-", "sk-ecdsa-sha2-")):
            (curve_name, point, *app), _ = strings(key_blob, 3 if key_type.startswith("sk-") else 2, pos)
            curve, digest = _CURVES[curve_name.decode("latin-1")]
            if sig_type != key_type or (not app and key_type != f"ecdsa-sha2-{curve_name.decode()}"):
                return False
            public = ec.EllipticCurvePublicKey.from_encoded_point(getattr(ec, curve)(), point)
            (r, s), end = strings(sig, 2)
            if end != len(sig):
                return False
            der = utils.encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            message = data if not app else _sk_message(app[0], flags_counter, data)
            public.verify(der, message, ec.ECDSA(getattr(hashes, "SHA256" if app else digest)()))
            return True
        if key_type == "ssh-rsa":
            (e, n), _ = strings(key_blob, 2, pos)
            modulus = int.from_bytes(n, "big")
            size = (modulus.bit_length() + 7) // 8
            if sig_type not in _RSA_HASHES or modulus.bit_length() < RSA_MIN_BITS or len(sig) > size:
                return False
            public_rsa = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), modulus).public_key()
            algorithm = getattr(hashes, _RSA_HASHES[sig_type])()
            public_rsa.verify(sig.rjust(size, b"\0"), data, padding.PKCS1v15(), algorithm)  # ssh-rsa.c pads short ones
            return True
        if key_type == "ssh-dss":
            (p, q, g, y), _ = strings(key_blob, 4, pos)
            if sig_type != "ssh-dss" or len(sig) != 40:
                return False
            numbers = dsa.DSAPublicNumbers(
                int.from_bytes(y, "big"), dsa.DSAParameterNumbers(*(int.from_bytes(x, "big") for x in (p, q, g)))
            )
            der = utils.encode_dss_signature(int.from_bytes(sig[:20], "big"), int.from_bytes(sig[20:], "big"))
            numbers.public_key().verify(der, data, hashes.SHA1())
            return True
    except (InvalidSignature, KeyError, ValueError):
        return False
    return False


def _sk_message(application: bytes, flags_counter: bytes, data: bytes) -> bytes:
    """What a FIDO authenticator signed (ssh-ed25519-sk.c / ssh-ecdsa-sk.c): SHA-256 of the application,
    the flags byte and the counter, SHA-256 of the data."""
    return hashlib.sha256(application).digest() + flags_counter + hashlib.sha256(data).digest()
