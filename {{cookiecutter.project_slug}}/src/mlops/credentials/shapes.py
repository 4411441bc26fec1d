"""Offline checks of the secrets that are text: the TOTP secret, the service password, the W&B key,
the trigger token and the GitLab token. Each says what is wrong by shape and length, never by value.

Formats: TOTP secrets are base32 (RFC 4648, RFC 6238 for the codes: mlops.ssh.codes computes them);
W&B keys as https://wandb.ai/authorize issues them; GitLab tokens by their documented prefixes
(docs.gitlab.com/security/tokens/#token-prefixes).
"""

from __future__ import annotations

import re

from .. import civars
from ..ssh import codes
from .result import FAIL, MISSING, PASS, SKIP, Result

TOTP_VAR, PASSWORD_VAR, WANDB_VAR = civars.TOTP, civars.PASSWORD, civars.WANDB
TRIGGER_VAR, GITLAB_TOKEN_VAR = civars.TRIGGER_TOKEN, civars.GITLAB_TOKEN


def masking_problem(value: str) -> str | None:
    """Why GitLab would refuse to mask this value (None = maskable). Says nothing about the value itself.

    GitLab masks a value of one line, at least 8 characters, without spaces
    (docs.gitlab.com/ci/variables/#mask-a-cicd-variable)."""
    if "\n" in value.strip() or "\r" in value:
        return "it has several lines"
    if len(value) < 8:
        return "it is shorter than 8 characters"
    if any(c.isspace() for c in value):
        return "it contains spaces"
    return None


def normalize_totp(secret: str) -> str:
    """Portals show the secret in groups ('ABCD EFGH ...'); GitLab refuses to mask values with spaces."""
    return "".join(secret.split()).upper()


def check_totp(secret: str | None) -> Result:
    """A base32 TOTP secret of at least 80 bits that yields codes (the same code the login uses)."""
    item = f"TOTP secret (${TOTP_VAR})"
    if not secret:
        return Result(
            item,
            MISSING,
            "not set",
            f"export {TOTP_VAR} (the base32 secret behind your authenticator app), or keep no secret and type "
            f"a code into {civars.OTP} when starting a cluster job (`mlops variables upload --codes typed`)",
        )
    value = normalize_totp(secret)
    bad = sorted({c for c in value.rstrip("=") if c not in codes.BASE32})
    if bad or not re.fullmatch(r"[A-Z2-7]+=*", value):
        hint = " (base32 has no 0, 1, 8 or 9: read them as O, I, B, g?)" if set(bad) & set("0189") else ""
        return Result(
            item,
            FAIL,
            f"not valid base32: {len(bad)} kind(s) of character outside A-Z and 2-7{hint}",
            "copy the secret again from your token's setup page (the text under the QR code)",
        )
    bits = len(value.rstrip("=")) * 5
    if bits < 80:
        return Result(
            item,
            FAIL,
            f"too short for a TOTP secret ({bits} bits; at least 80 expected)",
            "copy the whole secret from your token's setup page",
        )
    try:
        code = codes.totp_now(value)
    except codes.CodeProblem:
        return Result(item, FAIL, "does not yield codes", "copy the secret again")
    spaces = ", spaces removed (GitLab cannot mask them)" if value != secret.strip() else ""
    return Result(item, PASS, f"valid base32, {bits} bits, yields {len(code)}-digit codes{spaces}")


def check_password(password: str | None) -> Result:
    """The service password (auth totp+password): set, and maskable by GitLab."""
    item = f"service password (${PASSWORD_VAR})"
    if not password:
        return Result(item, MISSING, "not set", f"export the cluster account's service password as {PASSWORD_VAR}")
    why = masking_problem(password)
    if why:
        return Result(item, FAIL, f"GitLab cannot mask it: {why}", f"check the value you exported as {PASSWORD_VAR}")
    return Result(item, PASS, f"set, {len(password)} characters")


_WANDB_FORMS = (
    (re.compile(r"^[A-Za-z0-9_]{40}$"), "40-character key"),
    (re.compile(r"^local-[A-Za-z0-9_]{40,}$"), "W&B Server key (local-...)"),
    (re.compile(r"^[A-Za-z0-9_]{86}$"), "86-character key"),
    (re.compile(r"^[a-z0-9]+-[A-Za-z0-9_]{40,}$"), "on-premises key (prefix-...)"),
)


def check_wandb_key(key: str | None, mode: str = "offline") -> Result:
    """A W&B API key of a known form; SKIP when wandb.mode is disabled."""
    item = f"W&B API key (${WANDB_VAR})"
    if mode == "disabled":
        return Result(item, SKIP, "wandb.mode is disabled")
    if not key:
        return Result(
            item,
            MISSING,
            "not set",
            f"export {WANDB_VAR} (https://wandb.ai/authorize); it is needed to sync runs from "
            "the cluster (mode offline) or log to W&B (mode online)",
        )
    for pattern, kind in _WANDB_FORMS:
        if pattern.match(key):
            return Result(item, PASS, f"{kind}")
    what = []
    if key != key.strip() or any(c.isspace() for c in key):
        what.append("contains spaces or line breaks")
    if any(c in key for c in "'\"`"):
        what.append("contains quotes")
    what.append(f"{len(key)} characters")
    return Result(
        item,
        FAIL,
        "malformed: " + ", ".join(what) + "; W&B keys are 40 characters, 'local-' + 40, "
        "or 86 characters of letters, digits and '_'",
        "copy the key again from https://wandb.ai/authorize (or your W&B server's settings)",
    )


_GITLAB_OTHER_TOKENS = {
    "gldt-": "deploy token",
    "glptt-": "pipeline trigger token",
    "glrt-": "runner token",
    "glcbt-": "CI/CD job token",
    "gloas-": "OAuth application secret",
    "glft-": "feed token",
    "glimt-": "incoming mail token",
    "glsoat-": "SCIM token",
    "glagent-": "agent token",
}


def check_trigger_token(token: str | None) -> Result:
    """The pipeline trigger token (optional: without it the schedule collects): glptt-..., maskable."""
    item = f"pipeline trigger token (${TRIGGER_VAR})"
    if not token:
        return Result(item, SKIP, "not set (optional: without it no notification; the scheduled pipeline collects)")
    why = masking_problem(token)
    if why:
        return Result(item, FAIL, f"GitLab cannot mask it: {why}", f"copy the token again into {TRIGGER_VAR}")
    if not token.startswith("glptt-"):  # tokens made before GitLab 16 have no prefix
        return Result(item, PASS, f"set, {len(token)} characters, no glptt- prefix (an older trigger token?)")
    return Result(item, PASS, "pipeline trigger token (glptt-...)")


def check_gitlab_token(token: str | None) -> Result:
    """The API token of `mlops variables upload` / `check-credentials --gitlab`: an access token."""
    item = f"GitLab token (${GITLAB_TOKEN_VAR})"
    if not token:
        return Result(item, SKIP, "not set (only `mlops variables upload` and `check-credentials --gitlab` need it)")
    if re.match(r"^glpat-[A-Za-z0-9_.\-]{20,}$", token):
        return Result(item, PASS, "personal/project/group access token (glpat-...)")
    if re.match(r"^[A-Za-z0-9_\-]{20}$", token):
        return Result(item, PASS, "access token without prefix (created before GitLab 14.5)")
    for prefix, kind in _GITLAB_OTHER_TOKENS.items():
        if token.startswith(prefix):
            return Result(
                item,
                FAIL,
                f"is a {kind}, which cannot set CI/CD variables",
                "create a project access token (role Maintainer, scope api) under Settings > Access tokens",
            )
    return Result(
        item,
        FAIL,
        f"wrong shape ({len(token)} characters; expected 'glpat-' and at least 20 more "
        "of letters, digits, '_', '-', '.')",
        "copy the token again, without quotes or spaces; if your instance uses a custom token prefix, ask its admins",
    )
