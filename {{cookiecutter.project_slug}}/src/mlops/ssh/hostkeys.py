"""Which host-key algorithms to offer and whether to accept the server's key: the OpenSSH 9.2 client's
decision, ported (openssh-portable V_9_2_P1: sshconnect2.c order_hostkeyalgs, sshconnect.c
check_host_key, hostfile.c check_hostkeys_by_key_or_type and check_key_not_revoked).

    offered = hostkeys.offer(known, host, port, supported)     # before the key exchange
    note = hostkeys.verify(known, host, port, algorithm, blob)  # after it; HostKeyRefused, or what matched

In words: every matching line counts; a plain key is OK when one pinned under the name equals it, CHANGED
when another key (of any type) is pinned there, REVOKED when it (or, for a certificate, its CA) is under
`@revoked`, else NEW. Off port 22 a NEW key is looked up once more under the bare host name. A host
certificate is OK when a `@cert-authority` line for the name holds its CA and certificates.check_host
passes; otherwise (not after a revocation) it is retried as its plain key. Only OK connects.
The port includes OpenSSH's quirks, e.g. a server certificate whose CA is pinned nowhere makes a
different key pinned under `[host]:port` irrelevant (the certificate is NEW there, the bare-name
retry downgrades it and finds the plain key): mlops negotiates the certificate exactly where OpenSSH
does (offer()) and then decides as it does.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from ..errors import BadInput
from . import certificates
from .known_hosts import CA, REVOKED, Entry, KnownHosts, fingerprint, host_name, matching

HOST_KEY_ALGORITHMS = (  # myproposal.h KEX_DEFAULT_PK_ALG (V_9_2_P1): OpenSSH's default order
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
OK, NEW, CHANGED, REVOKED_KEY = "ok", "new", "changed", "revoked"


class HostKeyRefused(BadInput):
    """The server's host key is not accepted for this host; nothing was sent (exit 2)."""


def key_type(algorithm: str) -> str:
    """The known_hosts key type an algorithm proves: rsa-sha2-512(-cert-v01@openssh.com) -> ssh-rsa."""
    plain = algorithm.replace("-cert-v01@openssh.com", "")
    return "ssh-rsa" if plain.startswith("rsa-sha2-") else plain


def _found_type(entries: list[Entry], keytype: str) -> bool:
    """lookup_key_in_hostkeys_by_type: an unrevoked plain key of that type is pinned."""
    revoked = {e.blob for e in entries if e.marker == REVOKED}
    return any(not e.marker and e.keytype == keytype and e.blob not in revoked for e in entries)


def offer(known: KnownHosts, host: str, port: int, supported: Collection[str]) -> list[str]:
    """The host-key algorithms to offer, in OpenSSH's order (order_hostkeyalgs), limited to `supported`.

    With an ed25519 key pinned, OpenSSH's list as is; else the algorithms of pinned types (all
    certificate algorithms when a `@cert-authority` line matches) first, the others after.
    """
    entries = matching(known, host_name(host, port))
    if _found_type(entries, "ssh-ed25519"):
        ordered = list(HOST_KEY_ALGORITHMS)
    else:
        has_ca = any(e.marker == CA for e in entries)
        first = [
            a
            for a in HOST_KEY_ALGORITHMS
            if (a.endswith("-cert-v01@openssh.com") and has_ca) or _found_type(entries, key_type(a))
        ]
        ordered = first + [a for a in HOST_KEY_ALGORITHMS if a not in first]
    return [a for a in ordered if a in supported]


@dataclass
class _Attempt:
    status: str
    found: Entry | None = None
    cert_problem: str = ""  # why the certificate was not accepted (before the plain-key retry)
    revoked_ca: Entry | None = None
    name: str = ""


def _check_entries(entries: list[Entry], blob: bytes, cert: certificates.Certificate | None) -> _Attempt:
    """check_hostkeys_by_key_or_type + check_key_not_revoked for one list of matching entries."""
    status, found = NEW, None
    for e in entries:
        if e.marker != (CA if cert else ""):
            continue
        if cert is not None:
            if e.blob == cert.signature_key:
                status, found = OK, e
                break
        elif e.blob == blob:
            status, found = OK, e
            break
        else:
            status, found = CHANGED, e  # another key is pinned (sshkey_equal fails across types too)
    for e in entries:
        if e.marker == REVOKED and (e.blob == blob or (cert is not None and e.blob in (cert.key_blob,))):
            return _Attempt(REVOKED_KEY, e)
        if e.marker == REVOKED and cert is not None and e.blob == cert.signature_key:
            return _Attempt(REVOKED_KEY, e, revoked_ca=e)
    return _Attempt(status, found)


def _check(known: KnownHosts, host: str, port: int, blob: bytes, cert, now: float) -> _Attempt:
    """sshconnect.c check_host_key (strict checking, no CheckHostIP) for one name; recursion = port 0."""
    name = host_name(host, port)
    entries = matching(known, name)
    cert_problem = ""
    while True:
        attempt = _check_entries(entries, blob, cert)
        attempt.name, attempt.cert_problem = name, cert_problem
        if attempt.status == OK and cert is not None:
            problem = certificates.check_host(cert, host, now)
            if problem is None:
                return attempt
            attempt = _Attempt(NEW, None, problem, name=name)  # "goto fail" with the certificate
        elif attempt.status == NEW and port not in (0, 22):
            bare = _check(known, host, 0, blob, cert, now)  # "checking without port identifier"
            if bare.status == OK:
                return bare
        if attempt.status == OK:
            return attempt
        if cert is None or attempt.status == REVOKED_KEY:
            return attempt
        # "No matching CA found. Retry with plain key"
        cert_problem = attempt.cert_problem or (
            "its CA is not trusted by a @cert-authority line for this name"
            if attempt.status == NEW
            else "its CA does not match the @cert-authority line"
        )
        blob, cert = cert.key_blob, None


def verify(known: KnownHosts, host: str, port: int, algorithm: str, blob: bytes, now: float | None = None) -> str:
    """Accept the server's host key (`blob`, negotiated `algorithm`) for host:port, or raise HostKeyRefused.

    Returns what matched, for a verbose line. The messages name the file, the line and the fix.
    """
    where = host_name(host, port)
    cert = None
    if algorithm.endswith("-cert-v01@openssh.com"):
        try:
            cert = certificates.parse(blob)
        except ValueError as exc:
            raise HostKeyRefused(
                f"the host certificate of {where} is malformed ({exc}). Refusing to connect."
            ) from None
        if not certificates.signature_verifies(cert):  # OpenSSH fails the key exchange here
            raise HostKeyRefused(
                f"the CA signature on the host certificate of {where} does not verify. Refusing to connect."
            )
    result = _check(known, host, port, blob, cert, time.time() if now is None else now)
    plain = cert.key_blob if cert is not None else blob
    offered = f"{key_type(algorithm)} {fingerprint(plain)}"
    via = f" (under the name {result.name})" if result.name != where else ""
    if result.status == OK:
        if result.found is not None and result.found.marker == CA:
            return f"certificate signed by CA {fingerprint(result.found.blob)}{via}"
        return f"pinned {offered}{via}"
    also = f"; its host certificate was not accepted: {result.cert_problem}" if result.cert_problem else ""
    line = f"{known.source} line {result.found.lineno}" if result.found is not None else known.source
    if result.revoked_ca is not None:
        raise HostKeyRefused(
            f"the host certificate of {where} is signed by CA {fingerprint(result.revoked_ca.blob)}, which is "
            f"marked @revoked in {line}: a revoked CA. Refusing to connect. Fix: ask the cluster admins for "
            "the current CA or host key"
        )
    if result.status == REVOKED_KEY:
        raise HostKeyRefused(
            f"the host key of {where} ({offered}) is marked @revoked in {line}. Refusing to connect. "
            "Fix: ask the cluster admins for the current key"
        )
    if result.status == CHANGED:
        raise HostKeyRefused(
            f"the host key of {where} does NOT match the one pinned in {line} (it offered {offered}{also}). "
            "This is either a re-installed server or someone in the middle: confirm the new key with the "
            f"cluster admins before changing {known.source}. Refusing to connect."
        )
    raise HostKeyRefused(
        f"host {where} is not in the pinned known_hosts {known.source} (it offered {offered}{also}). Refusing "
        f"to connect. Fix: add its line to {known.source} and commit it, after comparing the fingerprint "
        "with the one the cluster publishes (e.g. `ssh-keygen -F "
        f"'{where}' >> {known.source}` from a known_hosts you checked, then `ssh-keygen -lf {known.source}`)"
    )


def pinned(known: KnownHosts, host: str, port: int) -> tuple[str, list[str]]:
    """What the file pins for host:port, for `mlops check-credentials`: (status, descriptions).

    status: "pinned" (a usable key or CA, under the name or off port 22 the bare name), "revoked"
    (lines match but every key and CA is @revoked) or "missing".
    """
    out, hit = [], False
    for name in dict.fromkeys([host_name(host, port), host_name(host, 22)]):
        entries = matching(known, name)
        hit = hit or bool(entries)
        revoked = {e.blob for e in entries if e.marker == REVOKED}
        for e in entries:
            if e.marker != REVOKED and e.blob not in revoked:
                what = f"host certificates signed by CA {e.keytype}" if e.marker == CA else e.keytype
                out.append(f"{what} {e.fingerprint}" + ("" if name == host_name(host, port) else f" (under {name})"))
        if out:
            return "pinned", out
    return ("revoked" if hit else "missing"), []
