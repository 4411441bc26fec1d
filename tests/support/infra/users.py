"""Create the unprivileged test user (tolerating one left by an earlier run)."""

import pwd
import subprocess

from ._util import InfraError


def ensure_user(user: str, shell: str = "/bin/bash") -> pwd.struct_passwd:
    """Return the passwd entry of ``user``, creating it with ``useradd -m``.

    An existing user (from an earlier session on a reused machine) is kept
    as-is: nothing here depends on its previous state.
    """
    try:
        return pwd.getpwnam(user)
    except KeyError:
        pass
    cp = subprocess.run(["useradd", "-m", "-s", shell, user], capture_output=True, text=True)
    if cp.returncode not in (0, 9):  # 9: already exists (raced with another creator)
        raise InfraError(f"useradd {user} failed rc={cp.returncode}: {cp.stderr}")
    return pwd.getpwnam(user)
