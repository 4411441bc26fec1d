"""Keyboard-interactive prompts: which one asks for what, and what may be typed into it.

RULES is a table of the prompts real sites and PAM modules send (first matching rule wins); a prompt is
classified by its last non-empty line, because OpenSSH's PAM bridge puts the module's info messages
(e.g. Duo's menu, "Your password expires in 3 days") before the question itself. Then:
  * the one-time code goes only into a CODE prompt, HPC_PASSWORD only into a PASSWORD prompt, and only
    when cluster.auth is "totp+password";
  * PASSWORD_CODE (one prompt for both) gets the password immediately followed by the code, the
    documented convention of the sites and modules in its row; a PIN-worded combined prompt is refused
    (whether a site's "PIN" is the account password depends on its LinOTP/privacyIDEA otppin policy);
  * every other prompt, and a second code or password prompt in one login (the first was refused), stops
    the login BEFORE anything of that round is typed: the server records no failed attempt. Messages
    quote the prompt (sanitised server text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .. import civars, options
from ..errors import BadInput
from . import sources
from .codes import Codes

CODE, PASSWORD, PASSWORD_CODE, REFUSE = "code", "password", "password+code", "refuse"
PASSWORD_VAR = civars.PASSWORD

_PW = r"(?:pass\s*word|passwort|kennwort)"
_OTP = (
    r"(?:\botp\b|\btotp\b|token|one[\s-]*time|einmal|verification|(?:security|auth\w*|sicherheits)\s*code|"
    r"best[aä]tigungscode|verifizierungscode|\b2fa\b|\bmfa\b|second\s+factor|zweite[rn]?\s+faktor|pass\s*code)"
)
_AND = r"\s*(?:\+|&|\band\b|\bund\b|followed\s+by|gefolgt\s+von)\s*"


@dataclass(frozen=True)
class Rule:
    pattern: str  # searched case-insensitively in the prompt's last line
    kind: str
    source: str  # where this wording is seen, or why it is refused
    examples: tuple[str, ...]  # real prompts (unit-tested)


RULES: tuple[Rule, ...] = (
    Rule(
        r"\bnew\b|\bneues?\b|retype|re-?enter|wiederhole|current\s+password|\(current\)",
        REFUSE,
        "a password change (pam_unix: the password has expired); change it by hand on the cluster",
        ("New password: ", "Retype new password: ", "Current password: ", "Neues Passwort: "),
    ),
    Rule(
        r"yubikey",
        REFUSE,
        "a YubiKey OTP (pam_yubico, 44 characters): mlops answers TOTP codes only",
        ("Yubikey for `alice': ",),
    ),
    Rule(
        rf"\bpin\b{_AND}{_OTP}",
        REFUSE,
        "a PIN followed by the code (LinOTP/privacyIDEA/RADIUS PIN+OTP): whether the PIN is the account "
        "password depends on the site's otppin policy, so mlops cannot know what to type",
        ("PIN+Token: ", "PIN + OTP: ", "Enter PIN+OTP: "),
    ),
    Rule(
        rf"{_PW}{_AND}{_OTP}",
        PASSWORD_CODE,
        "the password immediately followed by the code: NERSC (docs.nersc.gov/connect/mfa), NeSI, "
        "google-authenticator-libpam forward_pass, LinOTP otppin=password (USERPASSWORDOTP)",
        ("Password + OTP: ", "Password & verification code: ", "Passwort + Einmalpasswort: "),
    ),
    Rule(
        r"\bpin\b",
        REFUSE,
        "a PIN: a token PIN or the account password, depending on the site; mlops cannot know which",
        ("PIN: ", "Token PIN: ", "Enter PIN: "),
    ),
    Rule(
        rf"{_OTP}|authenticator|\bduo\b",
        CODE,
        "one-time code prompts: pam_google_authenticator, pam_oath, privacyIDEA, SSSD 2FA, Duo, bwHPC, German sites",
        (
            "Verification code: ",
            "Your OTP: ",
            "One-time password (OATH) for `alice': ",
            "Einmalpasswort: ",
            "Token: ",
            "Second Factor: ",
            "Second Factor (optional): ",
            "Enter passcode: ",
            "Passcode or option (1-3): ",
            "OTP: ",
            "2FA code: ",
            "Bestätigungscode: ",
        ),
    ),
    Rule(
        rf"{_PW}|passphrase|first\s+factor|erster\s+faktor",
        PASSWORD,
        "password prompts: pam_unix (English, German 'Passwort'), SSSD 2FA 'First Factor', Windows/AD 'Kennwort'",
        ("Password: ", "Passwort: ", "Kennwort: ", "First Factor: ", "alice@login's password: "),
    ),
)


def question(prompt: str) -> str:
    """The prompt's last non-empty line (the question; earlier lines are the module's info messages)."""
    lines = [line for line in prompt.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def rule_for(prompt: str) -> Rule | None:
    """The first rule of RULES matching the prompt's question, or None (not understood: refused)."""
    text = question(prompt)
    return next((r for r in RULES if re.search(r.pattern, text, re.IGNORECASE)), None)


def classify(prompt: str) -> str:
    """CODE, PASSWORD, PASSWORD_CODE or REFUSE for one prompt text."""
    rule = rule_for(prompt)
    return rule.kind if rule is not None else REFUSE


class PromptRefused(BadInput):
    """The server asked something mlops must not or cannot answer; nothing was typed (exit 2)."""


class Answerer:
    """The keyboard-interactive handler of one login: `answerer(title, instructions, prompts)`.

    `codes_factory()` gives the mlops.ssh.codes.Codes (called at the first code prompt), `password` is
    HPC_PASSWORD's value or None, `auth` the cluster.auth setting. Records what was typed, per prompt.
    """

    def __init__(self, codes_factory: Callable[[], Codes], password: str | None, auth: str, where: str):
        self._codes_factory, self._password, self.auth, self.where = codes_factory, password, auth, where
        self.codes: Codes | None = None
        self.answered: list[str] = []  # CODE / PASSWORD / PASSWORD_CODE per answered prompt, in order
        self.stopped: PromptRefused | None = None
        self.rounds: list[int] = []  # prompts per keyboard-interactive round (OpenSSH's PAM bridge: 1 each)

    @property
    def typed_code(self) -> bool:
        return any(k in (CODE, PASSWORD_CODE) for k in self.answered)

    @property
    def typed_password(self) -> bool:
        return any(k in (PASSWORD, PASSWORD_CODE) for k in self.answered)

    def __call__(self, title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        self.rounds.append(len(prompts))
        kinds = []
        code, password = self.typed_code, self.typed_password
        for text, _echo in prompts:  # check the whole round before typing anything
            rule = rule_for(text)
            kind = rule.kind if rule is not None else REFUSE
            problem = self._problem(kind, rule, sources.sanitize(question(text) or text), code, password)
            if problem:
                self.stopped = PromptRefused(problem)
                raise self.stopped
            code = code or kind in (CODE, PASSWORD_CODE)
            password = password or kind in (PASSWORD, PASSWORD_CODE)
            kinds.append(kind)
        answers = []
        for kind in kinds:
            if kind in (CODE, PASSWORD_CODE):
                self.codes = self.codes if self.codes is not None else self._codes_factory()
                value = self.codes.code()
                answers.append(value if kind == CODE else f"{self._password}{value}")
            else:
                answers.append(str(self._password))
            self.answered.append(kind)
        return answers

    def _problem(self, kind: str, rule: Rule | None, quoted: str, code: bool, password: bool) -> str | None:
        nothing = "nothing was typed"
        if kind == REFUSE:
            why = rule.source if rule is not None else "neither a one-time code nor a password prompt"
            return (
                f"{self.where} asked {quoted!r}: {why}; {nothing}. Fix: log in once by hand (ssh) to see what "
                "the site expects, and report the prompt to the mlops maintainers if it is a code or password prompt"
            )
        if (kind in (CODE, PASSWORD_CODE) and code) or (kind in (PASSWORD, PASSWORD_CODE) and password):
            return (
                f"{self.where} asked {quoted!r} again in the same login (the first answer was refused); "
                f"{nothing} a second time (repeated failures lock the account)"
            )
        if kind in (CODE, PASSWORD_CODE) and self.auth not in options.TOTP_METHODS:
            return (
                f"{self.where} asked for a one-time code ({quoted!r}) but clusters.NAME.auth is {self.auth!r}; "
                f'{nothing}. Fix: set auth = "totp" (or "totp+password") in the [clusters.NAME] block of '
                "mlops.toml"
            )
        if kind in (PASSWORD, PASSWORD_CODE) and self.auth != "totp+password":
            both = " followed by the one-time code" if kind == PASSWORD_CODE else ""
            return (
                f"{self.where} asked for the account password{both} ({quoted!r}); {nothing} (the one-time "
                f'code never goes into a password prompt). Fix: set auth = "totp+password" in the [clusters.NAME] '
                "block of mlops.toml and store the service password as the protected, masked and hidden variable "
                f"{PASSWORD_VAR}"
            )
        if kind in (PASSWORD, PASSWORD_CODE) and not self._password:
            return (
                f"{self.where} asked for a password ({quoted!r}) but {PASSWORD_VAR} is not set; {nothing}. "
                f"Fix: store the service password as the protected variable {PASSWORD_VAR}"
            )
        return None
