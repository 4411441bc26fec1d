"""The ONE place that turns a credential's source into words for a message.

Every message about a credential says where it came from and what shape it has, never its value:
    HPC_SSH_PRIVATE_KEY (holds key text, 411 bytes)
    HPC_SSH_PRIVATE_KEY (file /builds/x.tmp/HPC_SSH_PRIVATE_KEY)
    HPC_TOTP_SECRET (set, 32 characters)
    cluster.ssh_key in mlops.toml (~/.ssh/id_ed25519)
A value is shown only when it is a path of an existing file given to a *file* variable (paths are not
secret; GitLab gives file variables as paths) or a setting from mlops.toml (never a secret: the template
refuses secrets as answers). Everything else is described by its shape: key text, lines, length.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .. import civars

# Variables whose right shape is a path (GitLab "File" variables).
FILE_VARIABLES = civars.FILE_VARIABLES


def looks_like_key_text(value: str) -> bool:
    """True for private or public key material (PEM/OpenSSH armour, PuTTY, a public key line)."""
    head = value.lstrip()[:40]
    return "-----BEGIN" in value or head.startswith(("PuTTY-User-Key-File", "ssh-", "ecdsa-sha2-", "sk-"))


def existing_file(value: str) -> Path | None:
    """The file a value names, if it is a plausible path of an existing regular file; else None."""
    if not value or "\n" in value or "\r" in value or len(value) > 4096 or looks_like_key_text(value):
        return None
    try:
        path = Path(os.path.expanduser(value.strip()))
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def shape(value: str) -> str:
    """What a value looks like, in words that reveal none of it."""
    if not value.strip():
        return "empty"
    size = len(value.encode("utf-8", "replace"))
    if looks_like_key_text(value):
        return f"holds key text, {size} bytes"
    lines = len(value.strip().splitlines())
    if lines > 1:
        return f"holds {lines} lines, {size} bytes"
    return f"set, {len(value.strip())} characters"


def describe(name: str, env: Mapping[str, str] = os.environ) -> str:
    """`NAME (shape)` for the environment variable `name`; a file variable's existing path is shown."""
    value = env.get(name)
    if value is None:
        return f"{name} (not set)"
    if name in FILE_VARIABLES:
        path = existing_file(value)
        if path is not None:
            return f"{name} (file {value.strip()})"
        if not looks_like_key_text(value) and not any(c.isspace() for c in value.strip()):
            return f"{name} (a path of {len(value.strip())} characters; no such file)"
    return f"{name} ({shape(value)})"


def describe_setting(key: str, value: str) -> str:
    """A setting of mlops.toml (never a secret), e.g. `cluster.ssh_key in mlops.toml (~/.ssh/id_ed25519)`."""
    return f"{key} in mlops.toml ({value})"


def sanitize(text: object, limit: int = 160) -> str:
    """Server-supplied text (a prompt, a banner) made safe to quote: no control characters, bounded."""
    clean = "".join(c if c.isprintable() else " " for c in str(text)).strip()
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."
