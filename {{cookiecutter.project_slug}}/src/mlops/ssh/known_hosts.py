"""OpenSSH known_hosts, read exactly as the OpenSSH 9.2 client reads it (openssh-portable V_9_2_P1:
hostfile.c hostkeys_foreach_file and check_markers, sshkey.c sshkey_read, match.c match_hostname).

The pinned file is `.gitlab/known_hosts` in the project (PINNED): public keys are not secrets, so they
are versioned and reviewed with the code, the same file on a laptop and in CI; nothing else (no
variable's text or path, no ~/.ssh/known_hosts) is ever used as host keys. Read by the login
(mlops.ssh.hostkeys) and by `mlops check-credentials`.

Parsing, byte for byte as hostfile.c does:
  * lines end at "\\n" only (a CR stays in the line; base64 skips it); leading blanks, "#" comments and
    empty lines are skipped; fields are separated by SPACE and TAB only (not \\v, \\f, NBSP ...);
  * a marker (`@cert-authority`, `@revoked`) ends at the line's FIRST SPACE, else its first TAB: so
    `@cert-authority<TAB>host key...` with a space later is an invalid marker and the line is skipped;
    one marker at most;
  * host field: comma list of patterns with `*` and `?`, `!` negation, compared lower-cased (ASCII);
    `[host]:port` off port 22; `|1|salt|hash` hashed names (HMAC-SHA1, compared as OpenSSH encodes it);
  * key: a type OpenSSH knows, then base64 of a well-formed key blob of that type; anything else makes
    the line invalid (skipped, reported by number in `warnings`, never quoted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

from .certificates import RSA_MIN_BITS, read_string, strings

PINNED = Path(".gitlab") / "known_hosts"
CA, REVOKED = "@cert-authority", "@revoked"
_CURVE_OF = {"ecdsa-sha2-nistp256": b"nistp256", "ecdsa-sha2-nistp384": b"nistp384", "ecdsa-sha2-nistp521": b"nistp521"}
KEY_TYPES = (  # the plain key types sshkey_read knows (certificate types never pin a host)
    "ssh-ed25519",
    *_CURVE_OF,
    "ssh-rsa",
    "ssh-dss",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Entry:
    lineno: int
    marker: str  # "", REVOKED or CA
    hosts: str  # the host field as written (patterns or a hashed name)
    keytype: str
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


@dataclass
class KnownHosts:
    entries: list[Entry]
    source: str = "known_hosts"
    warnings: list[str] = field(default_factory=list)  # one per skipped line, with its number


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (public information)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def pinned_path(root: Path) -> Path:
    """Where a project pins its host keys: `<root>/.gitlab/known_hosts`."""
    return Path(root) / PINNED


def load(path: Path) -> KnownHosts:
    """The known_hosts file at `path` (`pinned_path(root)`); FileNotFoundError when there is none."""
    return parse(Path(path).read_bytes(), str(path))


def parse(text: str | bytes, source: str = "known_hosts") -> KnownHosts:
    """Every valid line of a known_hosts text; invalid ones become warnings (never quoting the line)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    known = KnownHosts([], source)
    for lineno, line_b in enumerate(raw.split(b"\n"), 1):
        line = line_b.split(b"\0", 1)[0].decode("latin-1")  # C strings end at NUL
        entry = _parse_line(line.lstrip(" \t"), lineno)
        if isinstance(entry, Entry):
            known.entries.append(entry)
        elif entry:
            known.warnings.append(f"{source} line {lineno}: {entry}, line skipped")
    return known


def _parse_line(cp: str, lineno: int) -> Entry | str:
    """One line without its leading blanks: an Entry, "" (comment/empty) or why it is invalid."""
    if not cp or cp.startswith("#"):
        return ""
    marker, cp = _markers(cp)
    if marker is None:
        return "invalid marker (one of @cert-authority or @revoked, followed by a space)"
    end = min((i for i in (cp.find(" "), cp.find("\t")) if i >= 0), default=len(cp))
    hosts, rest = cp[:end], cp[end:].lstrip(" \t")
    if not rest or rest.startswith("#"):
        return "no key type after the host names"
    end = min((i for i in (rest.find(" "), rest.find("\t")) if i >= 0), default=-1)
    keytype = rest[:end] if end >= 0 else rest
    if end < 0 or keytype not in KEY_TYPES:
        return "unknown key type" if end >= 0 else "no key after the key type"
    rest = rest[end:].lstrip(" \t")
    end = min((i for i in (rest.find(" "), rest.find("\t")) if i >= 0), default=len(rest))
    blob = _b64(rest[:end])
    if blob is None or not _well_formed(keytype, blob):
        return f"the key is not base64 of a {keytype} key"
    return Entry(lineno, marker, hosts, keytype, blob)


def _markers(cp: str) -> tuple[str | None, str]:
    """hostfile.c check_markers: (marker or "", the rest), or (None, ...) for an invalid marker."""
    found = ""
    while cp.startswith("@"):
        if found:
            return None, cp  # only one marker is allowed
        sp = cp.find(" ")
        if sp < 0:
            sp = cp.find("\t")
        if sp <= 1 or sp >= 32 or cp[:sp] not in (CA, REVOKED):
            return None, cp
        found, cp = cp[:sp], cp[sp:].lstrip(" \t")
    return found, cp


def _b64(text: str) -> bytes | None:
    """b64_pton as OpenSSH uses it: white space (C isspace) skipped, padding required."""
    try:
        return base64.b64decode(re.sub(r"[ \t\n\v\f\r]", "", text), validate=True)
    except (binascii.Error, ValueError):
        return None


def _well_formed(keytype: str, blob: bytes) -> bool:
    """sshkey_fromb: the blob is a key of exactly `keytype` with nothing after it."""
    try:
        name, pos = read_string(blob, 0)
        if name.decode("latin-1") != keytype:
            return False
        counts = {"ssh-ed25519": 1, "ssh-rsa": 2, "ssh-dss": 4, "sk-ssh-ed25519@openssh.com": 2}
        parts, end = strings(blob, counts.get(keytype, 3 if keytype.startswith("sk-") else 2), pos)
    except ValueError:
        return False
    if end != len(blob):
        return False
    if keytype.endswith("ed25519") or keytype.startswith("sk-ssh-ed25519"):
        return len(parts[0]) == 32
    if keytype == "ssh-rsa":
        return int.from_bytes(parts[1], "big").bit_length() >= RSA_MIN_BITS
    if "ecdsa" in keytype:
        return parts[0] == _CURVE_OF.get(keytype, b"nistp256") and _on_curve(parts[0], parts[1])
    return True


def _on_curve(curve: bytes, point: bytes) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec

    curves = {b"nistp256": ec.SECP256R1(), b"nistp384": ec.SECP384R1(), b"nistp521": ec.SECP521R1()}
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(curves[curve], point)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ names and host patterns (match.c)


def host_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host`, or `[host]:port` off port 22 (lower case)."""
    host = host.translate(_ASCII_LOWER)
    return host if int(port) in (0, 22) else f"[{host}]:{port}"


def _pattern(pattern: str, name: str) -> bool:
    """match.c match_pattern: `*` any run, `?` one character, everything else literal."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def host_matches(hosts: str, name: str) -> bool:
    """Does a host field match `name` (match_maybe_hashed: hashed names, else match_hostname)?"""
    name = name.translate(_ASCII_LOWER)
    if hosts.startswith("|"):  # host_hash(): the salt after "|1|" must be 20 bytes; compared re-encoded
        salt_b64, sep, _ = hosts[3:].partition("|")
        salt = _b64(salt_b64) if sep else None
        if salt is None or len(salt) != 20:
            return False
        digest = hmac.new(salt, name.encode("latin-1", "replace"), hashlib.sha1).digest()
        return hosts == f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    hit = False
    for pattern in hosts.split(","):  # match_pattern_list(name, hosts, dolower=1)
        negated = pattern.startswith("!")
        sub = pattern[1:] if negated else pattern
        if len(sub) >= 1023:
            return False  # OpenSSH: a subpattern that long fails the whole list
        if _pattern(sub.translate(_ASCII_LOWER), name):
            if negated:
                return False
            hit = True
    return hit


def matching(known: KnownHosts, name: str) -> list[Entry]:
    """The entries whose host field matches `name` (`host` or `[host]:port`), in file order."""
    return [e for e in known.entries if host_matches(e.hosts, name)]
