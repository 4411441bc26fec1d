"""The login to one endpoint, as a small state machine over a paramiko Transport:

1. TCP connect (directly, or through the jump host's direct-tcpip channel)
2. key exchange offering host-key algorithms in OpenSSH's order for the pinned lines; the server's
   key (or certificate) is decided as OpenSSH decides (hostkeys.py) BEFORE any credential is sent
3. publickey, then keyboard-interactive: every prompt classified (prompts.py); the code goes only
   into a code prompt, HPC_PASSWORD only into a password prompt; anything else stops before typing
4. a refused code from HPC_TOTP_SECRET gets ONE retry on a new connection, timed so that it can
   succeed (codes.py); a typed HPC_OTP never. Budget: 1 attempt (typed), 2 (secret).
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from ..errors import BadInput
from . import hostkeys, prompts, sources
from .codes import Codes
from .endpoint import Endpoint
from .known_hosts import KnownHosts

CONNECT_TIMEOUT = 20

# paramiko logs a handler's exception with a traceback; the user gets our message instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class LoginFailed(BadInput):
    """Connection or login refused; the message says what to fix (exit 2)."""


class _Refused(Exception):
    """The server refused the keyboard-interactive answers of one connection."""

    def __init__(self, answerer: prompts.Answerer):
        super().__init__("refused")
        self.answerer = answerer


_TRANSPORT_CLASS: Any = None


def _transport(sock: Any) -> Any:
    """A paramiko.Transport that keeps the raw host key blob (a certificate is parsed from it)."""
    global _TRANSPORT_CLASS
    if _TRANSPORT_CLASS is None:
        import paramiko

        class Transport(paramiko.Transport):
            def _verify_key(self, host_key: bytes, sig: bytes) -> None:
                self.mlops_host_key_blob = bytes(host_key)
                return super()._verify_key(host_key, sig)

        _TRANSPORT_CLASS = Transport
    return _TRANSPORT_CLASS(sock)


class Login:
    """Logs in to endpoints with one set of credentials; counts what it spends.

    `codes` returns the mlops.ssh.codes.Codes (called at the first code prompt), `password` is
    HPC_PASSWORD's value or None, `password_source` its description (sources.describe).
    """

    def __init__(
        self,
        known: KnownHosts,
        key: Any,
        auth: str,
        codes: Callable[[], Codes],
        password: str | None,
        key_label: str,
        password_source: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.known, self.key, self.auth, self._codes = known, key, auth, codes
        self.password, self.key_label, self.password_source = password, key_label, password_source
        self._clock, self._sleep = clock, sleep
        self.transports: list[Any] = []
        self.attempts = 0  # keyboard-interactive attempts that typed something (the documented budget)
        self.notes: list[str] = []  # what happened, for a verbose line (never a secret)
        self.answerers: list[prompts.Answerer] = []  # one per keyboard-interactive attempt

    def close(self) -> None:
        for t in reversed(self.transports):
            t.close()
        self.transports.clear()

    # ------------------------------------------------------------------ states
    def connect(self, endpoint: Endpoint, sock: Any = None) -> Any:
        """TCP + key exchange + the host key decision. Returns the transport (not yet authenticated)."""
        import paramiko

        where = f"{endpoint.host}:{endpoint.port}"
        try:
            t = _transport(sock or socket.create_connection((endpoint.host, endpoint.port), CONNECT_TIMEOUT))
        except OSError as exc:
            raise LoginFailed(
                f"cannot reach {where}: {exc.strerror or exc}. Fix: check clusters.NAME.host/port "
                "in mlops.toml, your VPN or jump host (clusters.NAME.jump_host)"
            ) from None
        self.transports.append(t)
        t.banner_timeout = t.auth_timeout = CONNECT_TIMEOUT
        offered = hostkeys.offer(self.known, endpoint.host, endpoint.port, paramiko.Transport._key_info)
        t.get_security_options().key_types = offered
        try:
            t.start_client(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise LoginFailed(
                f"connection closed by the server during the SSH handshake with {where} ({sources.sanitize(exc, 200)})"
            ) from None
        blob = t.mlops_host_key_blob
        self.notes.append(hostkeys.verify(self.known, endpoint.host, endpoint.port, t.host_key_type, blob))
        return t

    def authenticate(self, t: Any, endpoint: Endpoint) -> None:
        """publickey, then (when the server asks) one keyboard-interactive attempt. Raises _Refused."""
        import paramiko

        try:
            remaining = t.auth_publickey(endpoint.user, self.key)
        except paramiko.BadAuthenticationType as exc:
            remaining = exc.allowed_types
        except paramiko.AuthenticationException:
            if not t.is_active():
                raise LoginFailed(f"connection closed by the server during the key login of {endpoint.who}") from None
            raise LoginFailed(
                f"{self.key_label}: the cluster refused the key for {endpoint.who}; is its public key in "
                "~/.ssh/authorized_keys there (or registered in the site's key portal)?"
            ) from None
        except (paramiko.SSHException, EOFError, OSError):
            raise LoginFailed(f"connection closed by the server during the key login of {endpoint.who}") from None
        if t.is_authenticated():
            return
        if "keyboard-interactive" not in remaining:
            raise LoginFailed(
                f"{endpoint.host} wants {', '.join(remaining)} after the key; mlops supports a key, "
                "and a key plus keyboard-interactive (one-time code, optionally a password)"
            )
        answerer = prompts.Answerer(self._codes, self.password, self.auth, endpoint.host)
        self.answerers.append(answerer)
        try:
            t.auth_interactive(endpoint.user, answerer)
        except Exception as exc:
            if answerer.stopped is not None and not answerer.answered:
                raise answerer.stopped from None  # nothing was typed: no attempt spent
            self.attempts += 1
            if answerer.stopped is not None:
                raise answerer.stopped from None
            if isinstance(exc, (paramiko.AuthenticationException, paramiko.SSHException, EOFError, OSError)):
                if not t.is_active() or "EOF" in str(exc) or "shut down" in str(exc):
                    raise LoginFailed(
                        f"connection closed by the server during the keyboard-interactive login of "
                        f"{endpoint.who} (after {len(answerer.answered)} answer(s)); not a refused code"
                    ) from None
                raise _Refused(answerer) from None
            raise
        self.attempts += 1
        if not t.is_authenticated():
            raise LoginFailed(f"login to {endpoint.host} not complete after key and keyboard-interactive")

    def open(self, endpoint: Endpoint, sock_factory: Callable[[], Any]) -> Any:
        """connect + authenticate, with the one retry a computed code may get. Returns the transport."""
        try:
            t = self.connect(endpoint, sock_factory())
            self.authenticate(t, endpoint)
            return t
        except _Refused as first:
            codes = first.answerer.codes
            if codes is None or not codes.retryable or not first.answerer.typed_code:
                raise self._refused(endpoint, first.answerer, retried=False) from None
            self.close()
            delay = codes.retry_delay()
            self.notes.append(f"the first code was refused; one retry with the next step's code after {delay:.0f} s")
            print(
                f"mlops: {endpoint.host} refused the one-time code (reused: another login of this account in the "
                f"same 30 s step?); one retry in {delay:.0f} s with the next step's code (a retry sent earlier "
                "could fall outside the server's window when this machine's clock is ahead)",
                file=sys.stderr,
                flush=True,
            )
            self._sleep(delay)
            try:
                t = self.connect(endpoint, sock_factory())
                self.authenticate(t, endpoint)
                return t
            except _Refused as second:
                raise self._refused(endpoint, second.answerer, retried=True) from None

    def _refused(self, endpoint: Endpoint, answerer: prompts.Answerer, retried: bool) -> LoginFailed:
        codes = answerer.codes
        source = codes.source if codes is not None else "no code"
        also = f" (or the password from {self.password_source} is wrong)" if answerer.typed_password else ""
        if codes is not None and codes.kind == "typed":
            return LoginFailed(
                f"the cluster refused the one-time code for {endpoint.who} ({codes.source}){also}. Not retrying "
                "a typed code (repeated failures lock the account): a code works once and for about "
                "30-90 s. Fix: start the job again with a fresh code"
            )
        if retried:
            return LoginFailed(
                f"the cluster refused the one-time code for {endpoint.who} twice: the code of one step and, "
                f"30 s later, the next step's, both computed from {source}{also}. A reused code would have "
                "passed the second time, so this is a wrong secret or this machine's clock off by more than "
                "about 30 s. Not retrying again (repeated failures lock the account). Fix: check the secret "
                "(mlops check-credentials) and the clock (NTP)"
            )
        return LoginFailed(
            f"the cluster refused the login of {endpoint.who} ({source}){also}. "
            "Not retrying (repeated failures lock the account)"
        )
