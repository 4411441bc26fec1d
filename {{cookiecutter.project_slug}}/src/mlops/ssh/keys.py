"""The account's private key: from HPC_SSH_PRIVATE_KEY (a path, as a GitLab "File" variable gives it, or
the key text itself when the variable was created as a plain "Variable"), else cluster.ssh_key.

Key text is parsed from memory and never written anywhere. No message contains any part of a key:
sources.describe() says where it came from and its shape.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import civars
from ..errors import BadInput
from . import sources

if TYPE_CHECKING:
    import paramiko

KEY_VAR = civars.KEY
DEFAULT_KEY = "~/.ssh/id_ed25519"


class KeyProblem(BadInput):
    """The private key cannot be used (exit 2); the message names its source and the fix."""


@dataclass(frozen=True)
class KeySource:
    """Where the key comes from: `text` (key material in memory) or `path`; `label` is for messages."""

    label: str
    path: Path | None = None
    text: str | None = None


def source(env: Mapping[str, str] = os.environ, setting: str | None = None) -> KeySource:
    """HPC_SSH_PRIVATE_KEY (path or key text) wins over cluster.ssh_key (`setting`), else ~/.ssh/id_ed25519."""
    value = env.get(KEY_VAR, "")
    if value.strip():
        label = sources.describe(KEY_VAR, env)
        if sources.looks_like_key_text(value) or "\n" in value.strip():
            return KeySource(label, text=value.replace("\r\n", "\n").strip() + "\n")
        return KeySource(label, path=Path(os.path.expanduser(value.strip())))
    path = setting or DEFAULT_KEY
    return KeySource(sources.describe_setting("clusters.NAME.ssh_key", path), path=Path(os.path.expanduser(path)))


def read_text(src: KeySource) -> str:
    """The key text of a source; KeyProblem when the file is missing or unreadable."""
    if src.text is not None:
        return src.text
    path = src.path if src.path is not None else Path(os.path.expanduser(DEFAULT_KEY))
    if not path.is_file():
        raise KeyProblem(
            f"{src.label}: no private key file there. Fix: set the CI file variable {KEY_VAR} "
            "(type File) or point clusters.NAME.ssh_key in mlops.toml at your key"
        )
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise KeyProblem(f"{src.label}: cannot be read ({exc.strerror}). Fix: check its permissions") from None


def load(env: Mapping[str, str] = os.environ, setting: str | None = None) -> paramiko.PKey:
    """The paramiko key of the account. Raises KeyProblem (passphrase, not a private key, unreadable)."""
    import paramiko

    src = source(env, setting)
    text = read_text(src)
    try:
        info = inspect(text)
    except ValueError as exc:
        raise KeyProblem(
            f"{src.label}: {exc}. Fix: give {KEY_VAR} the private key file (a GitLab File "
            "variable) without a passphrase"
        ) from None
    if info.encrypted:
        raise KeyProblem(
            f"{src.label}: the key is protected by a passphrase; a job cannot type it. Fix: give CI "
            f"its own key without a passphrase as the protected file variable {KEY_VAR} "
            "(use ssh-agent on a laptop)"
        )
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError, TypeError, IndexError, struct.error):
            continue
    raise KeyProblem(
        f"{src.label}: not a private key paramiko can read ({info.kind}). Fix: use an ed25519, "
        "ECDSA or RSA key in OpenSSH format (ssh-keygen -t ed25519)"
    )


# ------------------------------------------------------------------ inspection without a passphrase


@dataclass(frozen=True)
class KeyInfo:
    kind: str  # e.g. ssh-ed25519, ssh-rsa, or "RSA (PEM)"
    encrypted: bool
    public_blob: bytes | None  # None when it cannot be derived without the passphrase


_PUBLIC_LINE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]{20,}")


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack(">I", buf[pos : pos + 4])
    if pos + 4 + n > len(buf):
        raise ValueError("truncated field")
    return buf[pos + 4 : pos + 4 + n], pos + 4 + n


def inspect(text: str) -> KeyInfo:
    """What kind of private key `text` is, without its passphrase. ValueError says what it is instead
    (the sentence never quotes the text)."""
    text = text.strip()
    if _PUBLIC_LINE.match(text):
        raise ValueError("is a PUBLIC key (one line starting with the key type), not a private key")
    if text.startswith("PuTTY-User-Key-File"):
        raise ValueError("is a PuTTY key; convert it: puttygen KEY.ppk -O private-openssh -o KEY")
    begin = re.match(r"-----BEGIN ([A-Z ]+)-----", text)
    if not begin or "PRIVATE KEY" not in begin.group(1):
        raise ValueError("is not a private key (no '-----BEGIN ... PRIVATE KEY-----' line)")
    label = begin.group(1)
    body_lines = [ln for ln in text.splitlines()[1:] if ln and not ln.startswith("-----") and ":" not in ln]
    try:
        body = base64.b64decode("".join(body_lines), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("has a damaged body (not base64); copy the file again") from None
    if label == "OPENSSH PRIVATE KEY":
        # openssh-key-v1: magic, cipher, kdf, kdf options, key count, public key (plain), private part.
        magic = b"openssh-key-v1\0"
        if not body.startswith(magic):
            raise ValueError("has a damaged OpenSSH key body")
        try:
            cipher, pos = _read_string(body, len(magic))
            _kdf, pos = _read_string(body, pos)
            _kdf_options, pos = _read_string(body, pos)
            (count,) = struct.unpack(">I", body[pos : pos + 4])
            public, pos = _read_string(body, pos + 4)
            private, pos = _read_string(body, pos)
            kind, _ = _read_string(public, 0)
        except (struct.error, ValueError):
            raise ValueError("has a damaged OpenSSH key body (truncated)") from None
        if count != 1:
            raise ValueError(f"holds {count} keys; use a file with exactly one")
        encrypted = cipher != b"none"
        # Unencrypted: two equal check integers start the private part; unequal means corruption.
        if not encrypted and (len(private) < 8 or private[:4] != private[4:8]):
            raise ValueError("has a damaged private part (check integers differ)")
        return KeyInfo(kind.decode(errors="replace"), encrypted, public)
    encrypted = label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in text
    pem_kind = {"RSA PRIVATE KEY": "RSA (PEM)", "EC PRIVATE KEY": "ECDSA (PEM)", "DSA PRIVATE KEY": "DSA (PEM)"}.get(
        label, "PKCS#8 (PEM)"
    )
    pem_public: bytes | None = None
    if not encrypted:
        try:  # the public half of a PEM key needs real crypto; cryptography comes with paramiko
            from cryptography.hazmat.primitives import serialization

            key = serialization.load_pem_private_key(text.encode(), password=None)
            line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            pem_public = base64.b64decode(line.split()[1])
        except ImportError:
            pem_public = None
        except Exception as exc:
            raise ValueError(f"does not parse as a private key ({type(exc).__name__})") from None
    return KeyInfo(pem_kind, encrypted, pem_public)
