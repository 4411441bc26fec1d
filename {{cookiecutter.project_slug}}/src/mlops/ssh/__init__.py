"""SSH to the cluster, one concern per module:

endpoint.py      host/port/user of the login node and jump host (cluster.jump_host parsing)
known_hosts.py   the pinned `.gitlab/known_hosts`, parsed and matched exactly as OpenSSH 9.2 does
certificates.py  host certificates: parsed, CA signature verified (cryptography), checked as OpenSSH
hostkeys.py      which host-key algorithms to offer and whether to accept the server's key (OpenSSH's decision)
keys.py          the account's private key (HPC_SSH_PRIVATE_KEY or cluster.ssh_key)
codes.py         RFC 6238 codes and when to send which (the retry that can succeed)
prompts.py       keyboard-interactive prompts: the table of real prompts and what goes into each
login.py         the login state machine over one paramiko Transport, with the retry budget
frame.py         output framing: only what the remote command printed, never the login shell's noise
session.py       Session: one login per command, run()/python()/write_file()/sftp/hold() (mlops.remote.Remote)
resolver.py      the resolver-steering environment variables mlops removes before any name lookup
sources.py       the ONE formatter of credential sources in messages (name + shape, never a value)

from mlops.ssh import Session
with Session.from_settings(s) as session:       # log in first, before any slow local work
    rc, out, err = session.run(["squeue", "-u", s.cluster.user])
"""

from ..remote import ConnectionLost, RemoteError
from .endpoint import Endpoint
from .hostkeys import HostKeyRefused
from .login import LoginFailed
from .session import Session, load_known_hosts

__all__ = ["ConnectionLost", "Endpoint", "HostKeyRefused", "LoginFailed", "RemoteError", "Session", "load_known_hosts"]
