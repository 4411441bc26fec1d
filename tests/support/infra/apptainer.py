"""A real Apptainer for the cluster user, unprivileged (tests/support/apptainer/README.md says how).

    with ApptainerForUser("mlopshpc") as appt:
        srv.set_env({**srv.setenv, "PATH": appt.path("fuse") + ":/usr/local/bin:/usr/bin:/bin"})

`ensure_installed()` runs tests/support/apptainer/install.sh (idempotent; ~1-5 min the first time,
`.ci/run` runs it before the tests) under a lock, and returns `apptainer version`.
`ApptainerForUser(user)` adds the one sudoers line that lets `user` run the root wrapper (which
enters the root that holds Apptainer and drops back to `user`) and removes it again at exit.
`path("fuse")` / `path("nofuse")`: the directory with that user's `apptainer` and `singularity`
(a /dev/fuse users can open, or the host's 0600 one: no FUSE for users).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

from ._util import InfraError, run

PREFIX = Path(os.environ.get("MLOPS_APPTAINER_PREFIX", "/opt/mlops-apptainer"))
INSTALL = Path(__file__).resolve().parents[1] / "apptainer" / "install.sh"


def ensure_installed(prefix: Path = PREFIX) -> str:
    """Install (or refresh the wrappers of) the tests' Apptainer under `prefix`; its version line."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{prefix}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions on one machine install once
        cp = subprocess.run(["bash", str(INSTALL), str(prefix)], capture_output=True, text=True, timeout=1800)
    if cp.returncode != 0:
        raise InfraError(f"Apptainer install failed (rc={cp.returncode}):\n{cp.stdout[-2000:]}\n{cp.stderr[-3000:]}")
    return (prefix / "VERSION").read_text().strip()


class ApptainerForUser:
    """The sudoers line for `user` and the user's `apptainer`/`singularity` directories (context manager)."""

    def __init__(self, user: str, prefix: Path = PREFIX):
        self.user, self.prefix = user, prefix
        self.sudoers = Path("/etc/sudoers.d") / f"mlops-apptainer-{user}"
        self.version = ""

    def path(self, mode: str) -> str:
        if mode not in ("fuse", "nofuse"):
            raise ValueError(mode)
        return str(self.prefix / f"user-bin-{mode}")

    def __enter__(self) -> ApptainerForUser:
        self.version = ensure_installed(self.prefix)
        line = f"{self.user} ALL=(root) NOPASSWD: {self.prefix}/bin/mlops-apptainer-root\n"
        tmp = self.sudoers.with_name(f".{self.sudoers.name}.tmp")  # sudo ignores names with a dot
        tmp.write_text(line)
        tmp.chmod(0o440)
        run(["visudo", "-cf", str(tmp)])
        tmp.rename(self.sudoers)
        return self

    def __exit__(self, *exc) -> None:
        self.sudoers.unlink(missing_ok=True)
