"""Where a secret's value comes from on this machine: the environment (the user exports the values
of the cluster at hand), else a hidden prompt when a person is at a terminal. Never a file of ours,
never a command line, never an echo. And where a code-login cluster's one-time codes come from: a
stored HPC_TOTP_SECRET, or a code typed (HPC_OTP) by whoever starts a cluster job."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from .. import civars
from ..errors import BadInput
from .result import in_ci

if TYPE_CHECKING:
    from ..settings import Settings

CODES = ("stored", "typed")  # a code-login cluster: HPC_TOTP_SECRET stored, or HPC_OTP typed at each job


def can_prompt(env: Mapping[str, str] = os.environ, stdin: TextIO | None = None) -> bool:
    """A person can answer a hidden prompt: stdin is a terminal and this is not a CI job."""
    stdin = sys.stdin if stdin is None else stdin
    try:
        return stdin is not None and stdin.isatty() and not in_ci(env)
    except (ValueError, OSError):  # closed or unusual stdin
        return False


def secret(name: str, env: Mapping[str, str] = os.environ, prompt: bool = False, cluster: str = "") -> str | None:
    """$name stripped, else (with `prompt`) a hidden prompt naming the cluster; None when neither gives one."""
    value = env.get(name, "")
    if value.strip() or not prompt:
        return value.strip() or None
    label = f"{name} for cluster {cluster}" if cluster else name
    return getpass.getpass(f"{label} (input hidden, Enter to skip): ").strip() or None


def check_codes(s: Settings, codes: str) -> None:
    """BadInput unless `codes` is a choice that fits the selected cluster's auth."""
    if codes not in CODES:
        raise BadInput(f"--codes: {codes!r} is not one of {', '.join(CODES)}")
    if codes == "typed" and s.cluster.auth not in civars.CODE_AUTH:
        raise BadInput(
            f"--codes typed: cluster {s.cluster.name} logs in with auth {s.cluster.auth!r}, which asks for no "
            "one-time code. Fix: leave --codes out"
        )
