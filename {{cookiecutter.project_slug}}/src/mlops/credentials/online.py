"""The one check that talks to the cluster: a real login through mlops.ssh.Session (the login of every
cluster command, with the project's pinned host keys) and one harmless command."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import MlopsError, missing_extra
from ..ssh import sources
from .result import FAIL, PASS, Result

if TYPE_CHECKING:
    from ..settings import Settings


def check_login(s: Settings, env: Mapping[str, str] = os.environ) -> Result:
    """Log in to the selected cluster for real and run `true`; the outcome as a Result (never raises)."""
    from ..ssh import Endpoint, Session, known_hosts

    c = s.cluster
    item = f"SSH login {c.user}@{known_hosts.host_name(c.host, c.port)} (cluster {c.name})"
    try:
        session = Session(
            Endpoint(c.host, int(c.port), c.user),
            c.auth,
            known=known_hosts.pinned_path(s.root),  # the project's pinned host keys, as every cluster command
            jump=Endpoint.parse(c.jump_host, c.user) if c.jump_host else None,
            ssh_key_setting=c.ssh_key or None,
            env=env,
        )
        with session:
            session.run("true", timeout=30)
    except MlopsError as exc:
        return Result(
            item, FAIL, str(exc), "see the message; `mlops check-credentials` without --online checks the files"
        )
    except ModuleNotFoundError as exc:
        problem = missing_extra(exc)
        detail = str(problem) if problem else f"ModuleNotFoundError: {sources.sanitize(exc, 300)}"
        return Result(item, FAIL, detail, "as the message says" if problem else "see the message")
    except Exception as exc:  # anything unforeseen: named by type, never a traceback
        return Result(item, FAIL, f"{type(exc).__name__}: {sources.sanitize(exc, 300)}", "see the message")
    return Result(item, PASS, "logged in and ran a command")
