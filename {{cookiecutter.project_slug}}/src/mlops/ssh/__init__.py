"""SSH to the cluster: known_hosts (OpenSSH semantics), the private key, one-time codes, keyboard-interactive
prompts, credential sources for messages, and the Session every cluster command logs in with once.

    from mlops.ssh import Session
    with Session.from_settings(s) as session:       # log in first, before any slow local work
        rc, out, err = session.run(["squeue", "-u", s.cluster.user])
"""

from .session import ConnectionLost, Endpoint, LoginFailed, RemoteError, Session, load_known_hosts

__all__ = ["ConnectionLost", "Endpoint", "LoginFailed", "RemoteError", "Session", "load_known_hosts"]
