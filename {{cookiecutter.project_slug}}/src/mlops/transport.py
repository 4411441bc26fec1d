"""Kept for callers not yet moved to mlops.ssh (the SSH room); import from mlops.ssh instead."""

from .ssh.codes import totp_now
from .ssh.session import ConnectionLost, Endpoint, RemoteError, Session
from .ssh.session import LoginFailed as TransportError

__all__ = ["ConnectionLost", "Endpoint", "RemoteError", "Session", "TransportError", "totp_now"]
