"""One-time codes: RFC 6238 TOTP, and which code a login sends when.

pam_google_authenticator (the usual PAM module) with its default WINDOW_SIZE 3 accepts the codes of
steps t-1, t, t+1 (30 s steps, t = the server's step) and, with DISALLOW_REUSE, refuses a step that ANY
earlier login of the account used. So:
  * A code from HPC_TOTP_SECRET is the code of the CURRENT step s of this machine's clock, computed when
    the server's code prompt arrives: it is accepted while the server's clock is within about one step
    of ours, and it cannot expire during the login.
  * The server says only "refused". Of the three reasons, a wrong secret and a clock off by more than
    a step cannot be helped by another try; a reused step (another login of the account in the same
    30 s) can, with the next step's code. Sent immediately, that code (s+1) would be outside the
    server's window whenever our clock is ahead (s = t+1): the retry can fail where the first code was
    fine. So the one retry waits until 30 s after the refused code was typed and sends the then
    current step's code (s+1): accepted for exactly the clock offsets the first code was accepted for.
    It therefore succeeds whenever the first code failed only because it was reused, and is the only
    attempt spent on a refusal. A code never repeats a step this process already sent.
  * A typed HPC_OTP is sent once and never retried (it is the only code a person gave).
Budget per command: typed code 1 attempt; secret 2 attempts (RATE_LIMIT on clusters is ~3-10 per 30 s).
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import os
import string
import struct
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from .. import civars
from ..errors import BadInput
from . import sources

TOTP_VAR, OTP_VAR = civars.TOTP, civars.OTP
STEP_S = 30
# RFC 4648 base32 (spelled out whole, the alphabet looks like a high-entropy secret to detect-secrets)
BASE32 = frozenset(string.ascii_uppercase + "234567")


class CodeProblem(BadInput):
    """No usable one-time code (exit 2): names the variable and the fix, never its value."""


def decode_secret(secret: str, name: str = TOTP_VAR, env: Mapping[str, str] | None = None) -> bytes:
    """The key bytes of a base32 TOTP secret (spaces and case ignored, padding optional)."""
    text = "".join(secret.split()).upper().rstrip("=")
    try:
        if not text or any(c not in BASE32 for c in text):
            raise ValueError
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        where = sources.describe(name, env) if env is not None else name
        raise CodeProblem(
            f"{where}: not a base32 TOTP secret (letters A-Z and digits 2-7, usually 16 or 32 "
            "of them). Fix: copy the secret again from the token's setup page"
        ) from None


def totp(key: bytes, step: int, digits: int = 6) -> str:
    """RFC 6238 (HMAC-SHA1) code of time step `step` (= unix time // 30)."""
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**digits
    return f"{code:0{digits}d}"


def totp_now(secret: str, at: float | None = None, digits: int = 6) -> str:
    """The code of the step containing `at` (default now) for a base32 secret."""
    return totp(decode_secret(secret), int((time.time() if at is None else at) // STEP_S), digits)


def choose_step(now: float, last_step: int | None = None) -> int:
    """The step whose code to send now: the current one, and always later than the last one sent."""
    step = int(now // STEP_S)
    return step if last_step is None or step > last_step else last_step + 1


class Codes:
    """Where this command's one-time codes come from. `code()` is called at the server's prompt."""

    kind = "code"
    retryable = False

    def __init__(self, source: str):
        self.source = source  # words for messages (sources.describe), never the value
        self.sent_step: int | None = None

    def code(self) -> str:
        raise NotImplementedError

    def retry_delay(self) -> float:
        """Seconds to wait before a retry can succeed (see the module docstring); 0 when none is owed."""
        return 0.0


class SecretCodes(Codes):
    """Codes computed from HPC_TOTP_SECRET: the current step's, never a step twice (module docstring)."""

    kind = "secret"
    retryable = True

    def __init__(self, key: bytes, source: str, clock: Callable[[], float] = time.time):
        super().__init__(source)
        self._key, self._clock = key, clock
        self.sent_at: float | None = None  # when the last code was computed (at the server's prompt)

    def code(self) -> str:
        self.sent_at = self._clock()
        self.sent_step = choose_step(self.sent_at, self.sent_step)
        return totp(self._key, self.sent_step)

    def retry_delay(self) -> float:
        if self.sent_at is None:
            return 0.0
        return max(0.0, min(float(STEP_S), self.sent_at + STEP_S - self._clock()))


class TypedCode(Codes):
    """A code a person typed (HPC_OTP or a hidden prompt): sent once, never retried."""

    kind = "typed"

    def __init__(self, value: str, source: str):
        super().__init__(source)
        self._value = value

    def code(self) -> str:
        return self._value


def from_env(env: Mapping[str, str] = os.environ, stdin: TextIO | None = sys.stdin) -> Codes:
    """HPC_OTP (typed when starting a manual job) wins; else HPC_TOTP_SECRET; else a hidden prompt on a TTY."""
    typed = env.get(OTP_VAR, "").strip()
    if typed:
        if not typed.isdigit() or not 6 <= len(typed) <= 8:
            raise CodeProblem(
                f"{sources.describe(OTP_VAR, env)}: a one-time code is 6 to 8 digits. Fix: type the "
                "code your authenticator shows when starting the job"
            )
        return TypedCode(typed, sources.describe(OTP_VAR, env))
    if env.get(TOTP_VAR, "").strip():
        return SecretCodes(decode_secret(env[TOTP_VAR], env=env), sources.describe(TOTP_VAR, env))
    if stdin is not None and stdin.isatty():
        return TypedCode(getpass.getpass("cluster one-time code: ").strip(), "the code typed at the prompt")
    raise CodeProblem(
        f"the cluster asks for a one-time code but none is given ({sources.describe(OTP_VAR, env)}, "
        f"{sources.describe(TOTP_VAR, env)}). Fix: type a code into {OTP_VAR} when starting the job, "
        f"or store the protected variable {TOTP_VAR}, or run from a terminal to be asked"
    )
