"""Checks of single answer values (a host, a jump host, a key path, a work directory, a cluster name).

Each returns a Problem naming the field, what is wrong and the fix, or None. rules.validate combines
them with the rules that relate several answers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One rejected answer: which field, what is wrong, how to fix it."""

    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}. Fix: {self.fix}."


# Full-match patterns only (re.fullmatch, or \A...\Z): `$` also matches before a final newline.
SLUG = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*")
USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
PLAIN = re.compile(r"[A-Za-z0-9_.-]+")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_WORKDIR = re.compile(r"/[A-Za-z0-9._/+-]*")
# A cluster's name: a TOML table name, a GitLab job/environment suffix and a file name (.mlops/last-run/NAME).
CLUSTER_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")
RESERVED_CLUSTER_NAMES = ("default",)  # `[clusters] default = NAME` is a key of the same table


def control_characters(value: str) -> bool:
    """True when `value` holds a control character (a newline, tab, NUL, ESC, DEL ...): such a value
    must never reach a shell line, a file name or an #SBATCH directive."""
    return any(unicodedata.category(c) == "Cc" for c in value)


def host_problem(field: str, value: str, allow_port: bool = False) -> Problem | None:
    """Explain what is wrong with a host answer, naming the most likely mistake first."""
    if not value:
        return Problem(field, "is empty", "give the host name, e.g. 'login.cluster.example.edu'")
    if "://" in value:
        bare = value.split("://", 1)[1].split("/", 1)[0]
        return Problem(field, f"{value!r} contains a URL scheme", f"give only the host name, e.g. {bare!r}")
    if any(c.isspace() for c in value):
        return Problem(field, f"{value!r} contains spaces", "remove the spaces")
    if "@" in value:
        return Problem(field, f"{value!r} contains a user name", "put the user into hpc_user, the host here")
    if "/" in value:
        return Problem(field, f"{value!r} contains a path", "give only the host name, without '/...'")
    host, _, port = value.partition(":")
    if port:
        if not allow_port:
            return Problem(field, f"{value!r} contains a port", "put the port into hpc_port")
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            return Problem(field, f"port {port!r} is not a TCP port", "use a number from 1 to 65535")
    if not _HOST.fullmatch(host) or len(host) > 253:
        return Problem(
            field,
            f"{value!r} is not a valid host name",
            "use letters, digits, hyphens and dots, e.g. 'login.cluster.example.edu'",
        )
    return None


def jump_problem(value: str) -> Problem | None:
    user, _, hostport = value.rpartition("@")
    if user and not USER.fullmatch(user):
        return Problem(
            "hpc_jump_host",
            f"user {user!r} is not a valid user name",
            "use the form [user@]host[:port] with a lowercase user name",
        )
    problem = host_problem("hpc_jump_host", hostport, allow_port=True)
    return problem


def ssh_key_problem(value: str) -> Problem | None:
    """The answer must be a path to a key file: a pasted key would end up in .cruft.json and the replay file."""
    field = "hpc_ssh_key"
    if "PRIVATE KEY" in value or "\n" in value or value.startswith(("ssh-", "ecdsa-", "sk-")):
        return Problem(
            field,
            "looks like a key, not a path to a key file (answers are stored in plain text in .cruft.json)",
            "give the path of the private key file, e.g. '~/.ssh/id_ed25519', "
            "and remove the pasted key from your shell history",
        )
    if not value.strip():
        return Problem(field, "is empty", "give the path of your private key, e.g. '~/.ssh/id_ed25519'")
    if value.endswith(".pub"):
        return Problem(field, f"{value!r} is a public key file", f"give the private key beside it: {value[:-4]!r}")
    if len(value) > 1024 or any(c in value for c in "\0\r\t"):
        return Problem(field, f"{value[:40]!r}... is not a usable file path", "give a path such as '~/.ssh/id_ed25519'")
    return None


def cluster_name_problem(value: str, field: str = "cluster_name") -> Problem | None:
    """What is wrong with a cluster name (the NAME of `[clusters.NAME]`), or None."""
    if value in RESERVED_CLUSTER_NAMES:
        return Problem(field, f"{value!r} is reserved (`[clusters] default = ...` names the default cluster)",
                       "choose another name, e.g. 'uni'")  # fmt: skip
    if not CLUSTER_NAME.fullmatch(value):
        return Problem(
            field,
            f"{value!r} is not a valid cluster name",
            "use 1 to 32 lowercase letters, digits and hyphens, not starting or ending with a hyphen, e.g. 'uni'",
        )
    return None


def workdir_problem(workdir: str, user: str) -> Problem | None:
    if not workdir.startswith("/"):
        return Problem(
            "hpc_workdir", f"{workdir!r} is not an absolute path", f"start it with '/', e.g. '/home/{user}/mlops'"
        )
    if not _WORKDIR.fullmatch(workdir) or "/../" in workdir + "/" or workdir.rstrip("/") == "":
        return Problem(
            "hpc_workdir",
            f"{workdir!r} contains characters or parts that are unsafe in a path",
            "use letters, digits, '.', '_', '-', '+' and '/', no '..', and not '/' itself",
        )
    return None
