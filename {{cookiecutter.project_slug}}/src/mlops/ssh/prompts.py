"""Keyboard-interactive prompts: which one asks for what, and what may be typed into it.

Sites word them differently: bwHPC asks "Your OTP:" then "Password:" in one exchange; others ask
"Verification code:" (pam_google_authenticator), "Token:", or the password first. OpenSSH's PAM
bridge sends one prompt per round. Rules:
  * the one-time code goes only into a prompt classified CODE;
  * a PASSWORD prompt gets HPC_PASSWORD only when cluster.auth is "totp+password";
  * anything else (or a password prompt without that setting) stops the login BEFORE answering, so the
    server records no failed attempt; the message quotes the prompt (sanitised server text).
"""

from __future__ import annotations

import re

from .. import civars
from ..errors import BadInput
from . import sources
from .codes import Codes

CODE, PASSWORD, OTHER = "code", "password", "other"
PASSWORD_VAR = civars.PASSWORD

_CODE = re.compile(
    r"verification\s*code|one[\s-]*time|\botp\b|\btotp\b|\bhotp\b|\b2fa\b|\bmfa\b|token|pass\s*code|"
    r"authenticator|second\s+factor|security\s+code|auth(entication)?\s+code|yubi",
    re.IGNORECASE,
)
_PASSWORD = re.compile(r"pass\s*word|passwort|\bpassphrase\b|\bpin\b", re.IGNORECASE)


def classify(prompt: str) -> str:
    """CODE, PASSWORD or OTHER for one prompt text ("One-time password" is a CODE)."""
    if _CODE.search(prompt):
        return CODE
    if _PASSWORD.search(prompt):
        return PASSWORD
    return OTHER


class PromptRefused(BadInput):
    """The server asked something mlops must not or cannot answer; nothing was typed (exit 2)."""


class Answerer:
    """The keyboard-interactive handler of one login: `answerer(title, instructions, prompts)`.

    `codes` is a mlops.ssh.codes.Codes (its code() is called at the prompt), `password` the HPC_PASSWORD
    value or None, `auth` the cluster.auth setting. Records what was answered for the messages.
    """

    def __init__(self, codes_factory, password: str | None, auth: str, where: str):
        self._codes_factory, self._password, self.auth, self.where = codes_factory, password, auth, where
        self.codes: Codes | None = None
        self.answered: list[str] = []  # CODE / PASSWORD per answered prompt, in order
        self.stopped: PromptRefused | None = None
        self.rounds: list[int] = []  # prompts per keyboard-interactive round (OpenSSH's PAM bridge: 1 each)

    def __call__(self, title: str, instructions: str, prompts) -> list[str]:
        self.rounds.append(len(prompts))
        kinds = [classify(text) for text, _echo in prompts]
        for (text, _echo), kind in zip(prompts, kinds, strict=True):  # check the whole round before typing anything
            problem = self._problem(kind, sources.sanitize(text))
            if problem:
                self.stopped = PromptRefused(problem)
                raise self.stopped
        answers = []
        for kind in kinds:
            if kind == CODE:
                codes = self.codes if self.codes is not None else self._codes_factory()
                self.codes = codes
                answers.append(codes.code())
            else:
                answers.append(self._password)
            self.answered.append(kind)
        return answers

    def _problem(self, kind: str, quoted: str) -> str | None:
        if kind == OTHER:
            return (
                f"{self.where} asked {quoted!r}, which is neither a one-time code nor a password prompt; "
                "nothing was typed. Fix: log in once by hand (ssh) to see what the site expects, and report "
                "the prompt to the mlops maintainers"
            )
        if kind == PASSWORD and self.auth != "totp+password":
            return (
                f"{self.where} asked for a password ({quoted!r}); nothing was typed (the one-time code never "
                f'goes into a password prompt). Fix: set cluster.auth = "totp+password" in mlops.toml and '
                f"store the service password as the protected, masked and hidden variable {PASSWORD_VAR}"
            )
        if kind == PASSWORD and not self._password:
            return (
                f"{self.where} asked for a password ({quoted!r}) but {PASSWORD_VAR} is not set; nothing was "
                f"typed. Fix: store the service password as the protected variable {PASSWORD_VAR}"
            )
        return None
