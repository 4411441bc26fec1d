"""Where a secret's value comes from on this machine: the environment (the user exports the values
of the cluster at hand), else a hidden prompt when a person is at a terminal. Never a file of ours,
never a command line, never an echo."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from .result import in_ci


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
