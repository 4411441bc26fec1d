"""OpenSSH known_hosts, read the way the OpenSSH client reads it (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT",
hostfile.c and match.c in openssh-portable). Used by the login AND by `mlops check-credentials`.

  * Every key of every line whose host field matches counts (rotation, round-robin login nodes).
  * Host field: comma list of patterns with `*` and `?`, `!` negation (a matching negated pattern
    rejects the line), case-insensitive; `[host]:port` for ports other than 22; `|1|salt|hash` hashed
    names (HMAC-SHA1 of the name).
  * `@revoked` marks a key that is never accepted for the hosts the line matches, wherever the line is.
  * `@cert-authority` trusts host certificates signed by that key for the matching hosts; the
    certificate is verified here (type host, principal, validity, CA signature).
  * Fields are separated by any whitespace; CRLF files and comments are fine; a malformed line is
    skipped with a warning (its line number), never fatal.
  * The login offers only the host-key algorithms pinned for the host (certificate algorithms when a CA
    matches), so a file with only an ECDSA line makes the server prove ECDSA (OpenSSH prefers the
    pinned types; a server without them fails either way).
  * Off port 22, when `[host]:port` pins no plain key at all, the plain `host` name is tried (OpenSSH:
    "checking without port identifier"); a pinned key of any type under `[host]:port` that is not the
    server's is a changed key. A certificate that does not verify falls back to its plain key
    (OpenSSH: "No matching CA found. Retry with plain key"). Found by the table test against the
    OpenSSH client (tests/test_ssh_login.py), which also shows the one OpenSSH quirk not copied
    (STRICTER there: a certificate lets OpenSSH skip a changed key pinned under `[host]:port`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from ..errors import BadInput

# key type in a known_hosts line -> paramiko host-key algorithms that prove it (OpenSSH 9 order;
# ssh-rsa means the rsa-sha2 signatures, SHA-1 "ssh-rsa" signatures are off in OpenSSH >= 8.8).
ALGORITHMS = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}
CERT_ALGORITHMS = (
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
)
MARKERS = ("@revoked", "@cert-authority")


class HostKeyRefused(BadInput):
    """The server's host key is not accepted for this host; nothing was sent (exit 2)."""


@dataclass(frozen=True)
class Entry:
    lineno: int
    marker: str  # "", "@revoked" or "@cert-authority"
    hosts: str  # the host field as written (patterns or a hashed name)
    keytype: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


@dataclass
class KnownHosts:
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)  # one per skipped line, with its number


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (public information)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _string(buf: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise ValueError("truncated")
    (n,) = struct.unpack(">I", buf[pos : pos + 4])
    if pos + 4 + n > len(buf):
        raise ValueError("truncated")
    return buf[pos + 4 : pos + 4 + n], pos + 4 + n


def parse(text: str, source: str = "known_hosts") -> KnownHosts:
    """Every valid line of a known_hosts text; malformed ones become warnings (never quoting the line)."""
    entries, warnings = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()  # any whitespace; strips a CR
        if not fields or fields[0].startswith("#"):
            continue
        marker = ""
        if fields[0].startswith("@"):
            marker = fields.pop(0)
            if marker not in MARKERS:
                warnings.append(f"{source} line {lineno}: unknown marker, line skipped")
                continue
        if len(fields) < 3:
            warnings.append(f"{source} line {lineno}: fewer than 3 fields (hosts, key type, key), line skipped")
            continue
        hosts, keytype, b64 = fields[:3]
        try:
            blob = base64.b64decode(b64, validate=True)
            inner, _ = _string(blob, 0)
        except (binascii.Error, ValueError):
            warnings.append(f"{source} line {lineno}: the key is not valid base64 of an SSH key, line skipped")
            continue
        if inner.decode(errors="replace") != keytype:
            warnings.append(f"{source} line {lineno}: key type {keytype} does not match the key, line skipped")
            continue
        if keytype not in ALGORITHMS:
            warnings.append(f"{source} line {lineno}: key type {keytype} is not supported, line skipped")
            continue
        entries.append(Entry(lineno, marker, hosts, keytype, blob))
    return KnownHosts(entries, warnings)


def host_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host`, or `[host]:port` off port 22 (lower case)."""
    host = host.lower()
    return host if int(port) == 22 else f"[{host}]:{port}"


def _pattern(pattern: str, name: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE | re.DOTALL) is not None


def host_matches(hosts: str, name: str) -> bool:
    """Does a known_hosts host field match `name` (OpenSSH match_hostname / hashed-name semantics)?"""
    if hosts.startswith("|1|"):
        try:
            salt_b64, digest_b64 = hosts[3:].split("|", 1)
            salt, digest = base64.b64decode(salt_b64, validate=True), base64.b64decode(digest_b64, validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(hmac.new(salt, name.lower().encode(), hashlib.sha1).digest(), digest)
    hit = False
    for pattern in hosts.split(","):
        if pattern.startswith("!"):
            if _pattern(pattern[1:], name):
                return False
        elif _pattern(pattern, name):
            hit = True
    return hit


@dataclass
class HostPins:
    """What a known_hosts file says about one host."""

    name: str  # `host` or `[host]:port`
    keys: list[Entry]  # plain pins (revoked ones included; see usable)
    cas: list[Entry]  # @cert-authority keys
    revoked: list[Entry]
    fallback: HostPins | None = None  # the port-less name, consulted as OpenSSH does (see the docstring)

    @property
    def pinned_anywhere(self) -> bool:
        """Is some key or CA usable for this host, under `[host]:port` or the port-less name?"""
        return bool(self.usable or self.usable_cas or (self.fallback and self.fallback.usable))

    @property
    def revoked_blobs(self) -> set[bytes]:
        return {e.blob for e in self.revoked}

    @property
    def usable(self) -> list[Entry]:
        return [e for e in self.keys if e.blob not in self.revoked_blobs]

    @property
    def usable_cas(self) -> list[Entry]:
        return [e for e in self.cas if e.blob not in self.revoked_blobs]

    def algorithms(self, supported: Collection[str]) -> list[str]:
        """Host-key algorithms to offer: certificate ones if a CA matches, then the pinned types."""
        out = list(CERT_ALGORITHMS) if self.usable_cas else []
        for entry in self.usable:
            out += [a for a in ALGORITHMS[entry.keytype] if a not in out]
        return [a for a in out if a in supported]


def lookup(known: KnownHosts, host: str, port: int) -> HostPins:
    name = host_name(host, port)
    hits = [e for e in known.entries if host_matches(e.hosts, name)]
    return HostPins(
        name,
        keys=[e for e in hits if not e.marker],
        cas=[e for e in hits if e.marker == "@cert-authority"],
        revoked=[e for e in hits if e.marker == "@revoked"],
        fallback=lookup(known, host, 22) if int(port) != 22 else None,
    )


# ------------------------------------------------------------------ deciding on the server's key


def verify(pins: HostPins, host: str, algorithm: str, blob: bytes, now: float | None = None) -> str:
    """Accept the server's host key (`blob`, negotiated `algorithm`) or raise HostKeyRefused.

    Returns a short description of what matched (for a verbose line). `host` is the name the
    certificate's principals must contain (the host name, without port).
    """
    where = pins.name
    if algorithm.endswith("-cert-v01@openssh.com"):
        try:
            return _verify_certificate(pins, host, blob, time.time() if now is None else now)
        except HostKeyRefused as refused:
            # OpenSSH: "No matching CA found. Retry with plain key" (not after a revocation)
            if "@revoked" in str(refused) or not (pins.usable or (pins.fallback and pins.fallback.usable)):
                raise
            try:
                plain = parse_certificate(blob)["key_blob"]
                return verify(pins, host, algorithm.replace("-cert-v01@openssh.com", ""), plain, now)
            except (ValueError, HostKeyRefused):
                raise refused from None
    offered = f"{algorithm} {fingerprint(blob)}"
    if blob in pins.revoked_blobs:
        raise HostKeyRefused(
            f"the host key of {where} ({offered}) is marked @revoked in the pinned known_hosts. "
            "Refusing to connect: ask the cluster admins for the current key"
        )
    if any(e.blob == blob for e in pins.usable):
        return f"pinned {offered}"
    # OpenSSH tries the port-less name only when [host]:port pins no plain key at all (HOST_NEW): a
    # pin there of any type that is not this key is a changed key (hostfile.c check_hostkeys_by_key_or_type)
    if pins.fallback is not None and not pins.keys:
        try:  # OpenSSH: "checking without port identifier"
            return verify(pins.fallback, host, algorithm, blob, now) + f" (under the name {pins.fallback.name})"
        except HostKeyRefused:
            pass
    if not pins.keys and not pins.cas:
        raise HostKeyRefused(
            f"host {where} is not in the pinned known_hosts (it offered {offered}); add its line "
            "after checking the fingerprint out-of-band. Refusing to connect."
        )
    raise HostKeyRefused(
        f"the host key of {where} does NOT match the pinned one (it offered {offered}). This is "
        "either a re-installed server or someone in the middle: confirm the new key with the "
        "cluster admins before updating the known_hosts file. Refusing to connect."
    )


def _verify_certificate(pins: HostPins, host: str, blob: bytes, now: float) -> str:
    import paramiko

    where = pins.name
    try:
        cert = parse_certificate(blob)
    except ValueError as exc:
        raise HostKeyRefused(f"the host certificate of {where} is malformed ({exc}). Refusing to connect.") from None
    ca_print = fingerprint(cert["signature_key"])
    if cert["signature_key"] in pins.revoked_blobs or cert["key_blob"] in pins.revoked_blobs:
        raise HostKeyRefused(f"the host certificate of {where} uses a key marked @revoked (CA {ca_print}). Refusing.")
    if not any(e.blob == cert["signature_key"] for e in pins.usable_cas):
        raise HostKeyRefused(
            f"the host certificate of {where} is signed by CA {ca_print}, which no @cert-authority "
            "line trusts for this host. Refusing to connect."
        )
    if cert["type"] != 2:
        raise HostKeyRefused(f"the certificate of {where} is a user certificate, not a host certificate. Refusing.")
    principals = [p.lower() for p in cert["principals"]]
    if principals and host.lower() not in principals:
        raise HostKeyRefused(
            f"the host certificate of {where} is not valid for the name {host!r} (principals: "
            f"{', '.join(p[:60] for p in principals[:5])}). Refusing to connect."
        )
    if not cert["valid_after"] <= now < cert["valid_before"]:
        raise HostKeyRefused(f"the host certificate of {where} is expired or not yet valid. Refusing to connect.")
    if cert["critical"]:
        raise HostKeyRefused(f"the host certificate of {where} has critical options mlops does not know. Refusing.")
    try:
        ca_type, _ = _string(cert["signature_key"], 0)
        ca = paramiko.Transport._key_info[ca_type.decode()](paramiko.Message(cert["signature_key"]))
        good = ca.verify_ssh_sig(cert["signed"], paramiko.Message(cert["signature"]))
    except Exception:  # an unknown CA key type or a damaged signature: not verified
        good = False
    if not good:
        raise HostKeyRefused(f"the CA signature on the host certificate of {where} does not verify. Refusing.")
    return f"certificate signed by CA {ca_print}"


_CERT_KEY_FIELDS = {  # public key fields between the nonce and the serial, per certificate type
    "ssh-ed25519-cert-v01@openssh.com": 1,
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": 2,
    "ssh-rsa-cert-v01@openssh.com": 2,
}


def parse_certificate(blob: bytes) -> dict:
    """The fields of an OpenSSH certificate (PROTOCOL.certkeys); ValueError when malformed."""
    kind, pos = _string(blob, 0)
    kind_s = kind.decode(errors="replace")
    if kind_s not in _CERT_KEY_FIELDS:
        raise ValueError(f"unsupported certificate type {kind_s[:60]}")
    _nonce, pos = _string(blob, pos)
    key_fields = []
    for _ in range(_CERT_KEY_FIELDS[kind_s]):
        value, pos = _string(blob, pos)
        key_fields.append(value)
    if pos + 12 > len(blob):
        raise ValueError("truncated")
    _serial, cert_type = struct.unpack(">QI", blob[pos : pos + 12])
    _key_id, pos = _string(blob, pos + 12)
    packed, pos = _string(blob, pos)
    principals, p = [], 0
    while p < len(packed):
        name, p = _string(packed, p)
        principals.append(name.decode(errors="replace"))
    if pos + 16 > len(blob):
        raise ValueError("truncated")
    valid_after, valid_before = struct.unpack(">QQ", blob[pos : pos + 16])
    critical, pos = _string(blob, pos + 16)
    _extensions, pos = _string(blob, pos)
    _reserved, pos = _string(blob, pos)
    signature_key, pos = _string(blob, pos)
    signed = blob[:pos]
    signature, pos = _string(blob, pos)
    plain = kind_s.replace("-cert-v01@openssh.com", "")
    key_blob = b"".join(struct.pack(">I", len(x)) + x for x in [plain.encode(), *key_fields])
    return {
        "type": cert_type,
        "principals": principals,
        "valid_after": valid_after,
        "valid_before": valid_before,
        "critical": critical,
        "signature_key": signature_key,
        "signed": signed,
        "signature": signature,
        "key_blob": key_blob,
    }
