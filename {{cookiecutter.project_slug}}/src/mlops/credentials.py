"""Check the cluster, W&B and GitLab credentials on this machine, without ever storing or printing them.

Where each one comes from (names in mlops.civars; the same names a CI job sees):
    SSH private key   $HPC_SSH_PRIVATE_KEY: a path (GitLab "File" variable) or the key text (a plain
                      "Variable" by mistake: read from memory, never written), else mlops.toml
                      cluster.ssh_key (the template answer hpc_ssh_key; a PATH, never the key)
    known_hosts       the project's .gitlab/known_hosts (versioned; never a variable)
    TOTP secret       $HPC_TOTP_SECRET, else a hidden prompt (only with a person at a terminal)
    W&B API key       $WANDB_API_KEY, else a hidden prompt (only with a person at a terminal)
    GitLab token      $GITLAB_TOKEN (only `mlops variables upload` needs it)

Each check gives one line: PASS, MISSING (not set up yet) or FAIL (set up wrongly), with the fix.
Output never contains a secret, only lengths, kinds and public fingerprints, and it is deterministic
(the post-gen hook runs it, also inside `cruft update`). Offline by default; `online=True` also logs in
to the cluster (through mlops.ssh.Session, the code the pipeline uses) and asks GitLab about the token.
known_hosts, keys and TOTP are read by mlops.ssh (the same implementation as the login); credential
sources are named by mlops.ssh.sources (never a value).
"""

from __future__ import annotations

import base64
import binascii
import getpass
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import civars
from .civars import CODE_AUTH
from .errors import BadInput
from .ssh import codes, keys, known_hosts, sources
from .ssh.known_hosts import fingerprint

KEY_VAR, TOTP_VAR = civars.KEY, civars.TOTP
PASSWORD_VAR, WANDB_VAR, GITLAB_TOKEN_VAR = civars.PASSWORD, civars.WANDB, civars.GITLAB_TOKEN
STRICT_VAR = "MLOPS_STRICT_CREDENTIALS"  # "1": problems make the check (and the hook) exit non-zero

PASS, MISSING, FAIL, SKIP = "PASS", "MISSING", "FAIL", "SKIP"


class CredentialError(BadInput):
    """A credential cannot be used; the message names it and the fix (CLI exit code 2)."""


@dataclass(frozen=True)
class Result:
    item: str  # what was checked, e.g. "SSH key"
    status: str  # PASS | MISSING | FAIL | SKIP
    detail: str  # what was found: never a secret
    fix: str = ""

    @property
    def problem(self) -> bool:
        return self.status in (MISSING, FAIL)

    def __str__(self) -> str:
        text = f"[{self.status}] {self.item}: {self.detail}"
        return text + (f"\n         fix: {self.fix}" if self.fix and self.problem else "")


def in_ci(env: Mapping[str, str] = os.environ) -> bool:
    return bool(env.get("CI") or env.get("GITLAB_CI"))


# ------------------------------------------------------------------ SSH private key

KeyInfo, parse_private_key = keys.KeyInfo, keys.inspect  # one parser: mlops.ssh.keys


def _key_source(answers: dict, env) -> keys.KeySource:
    return keys.source(env, str(answers.get("hpc_ssh_key") or "") or None)


def key_path(answers: dict, env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(a path that may be shown, where it came from): $HPC_SSH_PRIVATE_KEY wins over mlops.toml.

    Raises CredentialError when the variable holds key text (there is no path to give)."""
    src = _key_source(answers, env)
    if src.text is not None:
        raise CredentialError(
            f"{src.label}: holds the key itself, not a path. Fix: save the key to a file of mode "
            f"0600 and set {KEY_VAR} to that path (a GitLab File variable)"
        )
    if env.get(KEY_VAR, "").strip():
        return env[KEY_VAR].strip(), f"${KEY_VAR}"
    return str(answers.get("hpc_ssh_key") or keys.DEFAULT_KEY), "cluster.ssh_key"


def check_ssh_key(answers: dict, env: Mapping[str, str] = os.environ, ci: bool = False) -> Result:
    """The private key: exists, parses, mode 0600, no passphrase in CI, matches its .pub. Never shows key text."""
    src = _key_source(answers, env)
    item = f"SSH key, {src.label}"
    from_env = bool(env.get(KEY_VAR, "").strip())
    shown = (
        None
        if src.text is not None or (from_env and not (src.path and src.path.is_file()))
        else (env[KEY_VAR].strip() if from_env else str(answers.get("hpc_ssh_key") or keys.DEFAULT_KEY))
    )
    ref = shown or f"the file {KEY_VAR} names"
    setting = f"${KEY_VAR}" if from_env else "cluster.ssh_key"
    if src.text is None and not (src.path and src.path.is_file()):
        fix = (
            f"set {KEY_VAR} to the path of the private key file (a GitLab File variable)"
            if from_env
            else f"create a key for the cluster: ssh-keygen -t ed25519 -f {shown}, register {shown}.pub with the "
            "cluster (authorized_keys or the site's key portal), or point cluster.ssh_key at your key"
        )
        return Result(item, MISSING, "no such file", fix)
    try:
        text = keys.read_text(src)
    except keys.KeyProblem:
        return Result(item, FAIL, "cannot be read", f"check the permissions of {ref}")
    try:
        info = parse_private_key(text)
    except ValueError as exc:
        fix = (
            f"point {setting} at the private key: the file WITHOUT .pub"
            if "PUBLIC" in str(exc)
            else f"point {setting} at an OpenSSH private key file"
        )
        return Result(item, FAIL, str(exc), fix)
    if info.encrypted and ci:
        return Result(
            item,
            FAIL,
            f"{info.kind} key protected by a passphrase: a CI job cannot type it",
            "give CI its own key without a passphrase (ssh-keygen -t ed25519 -N '' -f ~/.ssh/<project>-ci), "
            f"registered on the cluster, as the protected file variable {KEY_VAR}",
        )
    fp = f" {fingerprint(info.public_blob)}" if info.public_blob is not None else ""
    if src.text is not None:
        return Result(
            item,
            PASS,
            f"{info.kind}{fp}, key text in the variable itself: used from memory, never "
            f"written; better make {KEY_VAR} a File variable (a multi-line value cannot be masked)",
        )
    path = src.path
    assert path is not None  # a source is key text (handled above) or a file path
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Result(
            item, FAIL, f"is readable by other users (mode {mode:04o}); ssh refuses such keys", f"chmod 600 {ref}"
        )
    pub_path = Path(f"{path}.pub")
    if info.public_blob is not None and pub_path.is_file():
        parts = pub_path.read_text(errors="replace").split()
        try:
            pub_blob = base64.b64decode(parts[1], validate=True) if len(parts) >= 2 else b""
        except (binascii.Error, ValueError):
            pub_blob = b""
        if pub_blob != info.public_blob:
            return Result(
                item,
                FAIL,
                f"{ref}.pub does not belong to this private key "
                f"(key {fingerprint(info.public_blob)}, .pub {fingerprint(pub_blob) if pub_blob else 'unreadable'})",
                f"regenerate it: ssh-keygen -y -f {ref} > {ref}.pub, and register that on the cluster",
            )
        match = f"matches {ref}.pub"
    elif info.public_blob is not None:
        match = f"no {ref}.pub beside it (regenerate with ssh-keygen -y -f {ref})"
    else:
        match = "public half not checked (PEM key with passphrase)"
    protection = (
        "protected by a passphrase (fine on a laptop with ssh-agent; CI needs an unencrypted key)"
        if info.encrypted
        else "no passphrase"
    )
    return Result(item, PASS, f"{info.kind}{fp}, mode {mode:04o}, {protection}, {match}")


# ------------------------------------------------------------------ known_hosts (mlops.ssh.known_hosts)


def endpoints(answers: dict) -> list[tuple[str, str, int]]:
    """(role, host, port) of the login node and, when set, the jump host."""
    from .ssh.endpoint import Endpoint

    port = str(answers.get("hpc_port") or 22)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise CredentialError(
            f"cluster.port: {sources.sanitize(port, 20)!r} is not a TCP port. Fix: a number from "
            "1 to 65535 in mlops.toml"
        )
    out = [("cluster", str(answers.get("hpc_host", "")), int(port))]
    jump = str(answers.get("hpc_jump_host") or "")
    if jump:
        hop = Endpoint.parse(jump, str(answers.get("hpc_user", "")))
        out.append(("jump host", hop.host, hop.port))
    return out


def check_known_hosts(answers: dict, root: Path) -> list[Result]:
    """One line per host (login node, jump host): what `<root>/.gitlab/known_hosts` pins for it, read as the
    login reads it (mlops.ssh.hostkeys.pinned)."""
    from .ssh import hostkeys

    path = known_hosts.pinned_path(root)
    try:
        known: known_hosts.KnownHosts | None = known_hosts.load(path)
    except OSError:
        known = None
    results = []
    for role, host, port in endpoints(answers):
        name = known_hosts.host_name(host, port)
        item = f"known_hosts entry for the {role} {name} (in {known_hosts.PINNED})"
        fix = (
            f"add the host's line to {known_hosts.PINNED} and commit it (public keys are reviewed with the code): "
            f"take it from the cluster's documentation or a known_hosts you checked (ssh-keygen -F '{name}'), "
            f"compare `ssh-keygen -lf {known_hosts.PINNED}` with the fingerprint the admins publish; never "
            "ssh-keyscan inside CI"
        )
        if known is None:
            results.append(Result(item, MISSING, "the file does not exist", fix))
            continue
        status, parts = hostkeys.pinned(known, host, port)
        skipped = f"; skipped: {'; '.join(known.warnings)}" if known.warnings else ""
        if status == "revoked":
            detail = f"every key and CA pinned for this host is marked @revoked{skipped}"
            results.append(Result(item, FAIL, detail, "ask the admins for the current host key and add its line"))
        elif status == "missing":
            results.append(Result(item, MISSING, f"no line for this host{skipped}", fix))
        else:
            results.append(Result(item, PASS, "pinned: " + ", ".join(parts) + skipped))
    return results


# ------------------------------------------------------------------ TOTP, W&B, GitLab


def normalize_totp(secret: str) -> str:
    """Portals show the secret in groups ('ABCD EFGH ...'); GitLab refuses to mask values with spaces."""
    return "".join(secret.split()).upper()


def check_totp(secret: str | None) -> Result:
    item = f"TOTP secret (${TOTP_VAR})"
    if not secret:
        return Result(
            item,
            MISSING,
            "not set",
            f"export {TOTP_VAR} (the base32 secret behind your authenticator app) or type a code into "
            "HPC_OTP when starting a cluster job",
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
    try:  # the same code the login uses
        code = codes.totp_now(value)
    except codes.CodeProblem:
        return Result(item, FAIL, "does not yield codes", "copy the secret again")
    spaces = ", spaces removed (GitLab cannot mask them)" if value != secret.strip() else ""
    return Result(item, PASS, f"valid base32, {bits} bits, yields {len(code)}-digit codes{spaces}")


_WANDB_FORMS = (
    (re.compile(r"^[A-Za-z0-9_]{40}$"), "40-character key"),
    (re.compile(r"^local-[A-Za-z0-9_]{40,}$"), "W&B Server key (local-...)"),
    (re.compile(r"^[A-Za-z0-9_]{86}$"), "86-character key"),
    (re.compile(r"^[a-z0-9]+-[A-Za-z0-9_]{40,}$"), "on-premises key (prefix-...)"),
)


def check_wandb_key(key: str | None, mode: str = "offline") -> Result:
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


def check_gitlab_token(token: str | None) -> Result:
    item = f"GitLab token (${GITLAB_TOKEN_VAR})"
    if not token:
        return Result(item, SKIP, "not set (only `mlops variables upload` needs it)")
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


def check_gitlab_online(token: str, url: str, timeout: float = 10) -> Result:
    """Scopes and expiry of the token, from GitLab itself (GET /personal_access_tokens/self)."""
    import datetime

    import gitlab  # python-gitlab, the [gitlab] extra

    item = f"GitLab token at {url}"
    try:
        gl = gitlab.Gitlab(url, private_token=token, timeout=timeout)
        info = gl.personal_access_tokens.get("self")
    except gitlab.exceptions.GitlabAuthenticationError:
        return Result(
            item,
            FAIL,
            "GitLab refused the token (revoked, expired or wrong instance)",
            "create a new project access token with the api scope",
        )
    except Exception as exc:
        return Result(
            item,
            FAIL,
            f"cannot ask GitLab ({type(exc).__name__}: {str(exc)[:200]})",
            "check project.gitlab_host in mlops.toml and your network",
        )
    scopes = sorted(getattr(info, "scopes", []) or [])
    if "api" not in scopes:
        return Result(item, FAIL, f"scopes {scopes} lack 'api'", "create a token with the api scope")
    expires = getattr(info, "expires_at", None)
    if expires:
        days = (datetime.date.fromisoformat(expires) - datetime.date.today()).days
        if days < 0:
            return Result(item, FAIL, f"expired on {expires}", "create a new token")
        return Result(item, PASS, f"scopes {scopes}, expires {expires} (in {days} days)")
    return Result(item, PASS, f"scopes {scopes}, no expiry date")


def check_ssh_online(answers: dict, root: Path, env: Mapping[str, str] = os.environ) -> Result:
    """Log in for real, through mlops.ssh.Session (the login of every cluster command), and run `true`."""
    from .errors import MlopsError
    from .ssh.endpoint import Endpoint
    from .ssh.session import Session

    host, user = str(answers["hpc_host"]), str(answers["hpc_user"])
    port = str(answers.get("hpc_port") or 22)
    item = f"SSH login {user}@{known_hosts.host_name(host, int(port)) if port.isdigit() else host}"
    try:
        _, _, port_i = endpoints(answers)[0]
        jump = Endpoint.parse(answers["hpc_jump_host"], user) if answers.get("hpc_jump_host") else None
        session = Session(
            Endpoint(host, port_i, user),
            str(answers.get("hpc_auth", "totp")),
            known=known_hosts.pinned_path(root),
            jump=jump,
            ssh_key_setting=str(answers.get("hpc_ssh_key") or "") or None,
            env=env,
        )
        with session:
            session.run("true", timeout=30)
    except MlopsError as exc:
        return Result(
            item, FAIL, str(exc), "see the message; `mlops check-credentials` without --online checks the files"
        )
    except Exception as exc:  # anything unforeseen: named by type, never a traceback
        return Result(item, FAIL, f"{type(exc).__name__}: {sources.sanitize(exc, 300)}", "see the message")
    return Result(item, PASS, "logged in and ran a command")


# ------------------------------------------------------------------ all checks


def _secret(name: str, env, prompt: bool) -> str | None:
    value = env.get(name, "")
    if value.strip() or not prompt:
        return value.strip() or None
    return getpass.getpass(f"{name} (input hidden, Enter to skip): ").strip() or None


def check_all(
    answers: dict,
    env: Mapping[str, str] = os.environ,
    interactive: bool = False,
    online: bool = False,
    root: Path | None = None,
) -> list[Result]:
    """Every check that applies to these answers (mlops.toml seen as template options) in the project
    at `root` (default: the current directory)."""
    root = Path.cwd() if root is None else root
    ci = in_ci(env)
    results = [check_ssh_key(answers, env, ci=ci)]
    results += check_known_hosts(answers, root)
    if answers.get("hpc_auth") in CODE_AUTH:
        results.append(check_totp(_secret(TOTP_VAR, env, interactive)))
    if answers.get("hpc_auth") == "totp+password":
        password = env.get(PASSWORD_VAR, "")
        results.append(
            Result(
                f"service password (${PASSWORD_VAR})",
                PASS if password else MISSING,
                "set" if password else "not set",
                f"store the cluster account's service password as the protected variable {PASSWORD_VAR}",
            )
        )
    wandb_mode = str(answers.get("wandb_mode", "offline"))
    results.append(check_wandb_key(_secret(WANDB_VAR, env, interactive and wandb_mode != "disabled"), wandb_mode))
    token = env.get(GITLAB_TOKEN_VAR, "").strip() or None
    results.append(check_gitlab_token(token))
    if online:
        results.append(check_ssh_online(answers, root, env))
        if token and not results[-2].problem:
            host = str(answers.get("gitlab_host") or "gitlab.com")
            results.append(check_gitlab_online(token, f"https://{host}"))
    return results


def strict(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(STRICT_VAR, "").strip().lower() in ("1", "true", "yes")


def report(results: list[Result], out: TextIO = sys.stdout) -> int:
    """Print one line per check and a summary; returns the number of problems."""
    for result in results:
        print(str(result), file=out)
    problems = sum(r.problem for r in results)
    print(f"credentials: {problems} problem(s)" if problems else "credentials: all set", file=out)
    return problems


# ------------------------------------------------------------------ values for upload / local runs


def value_for(name: str, answers: dict, env: Mapping[str, str] = os.environ) -> str:
    """The value of a CI variable, taken from this machine, validated; raises CredentialError (never shows it)."""
    if name == KEY_VAR:
        result = check_ssh_key(answers, env, ci=True)  # CI cannot type a passphrase
        if result.problem:
            raise CredentialError(f"{result.item}: {result.detail}. Fix: {result.fix}")
        return keys.read_text(_key_source(answers, env))
    checks = {TOTP_VAR: check_totp, WANDB_VAR: lambda v: check_wandb_key(v, "online")}
    value = env.get(name, "").strip()
    if name in checks:
        result = checks[name](value or None)
        if result.problem:
            raise CredentialError(f"{name}: {result.detail}. Fix: {result.fix}")
        return normalize_totp(value) if name == TOTP_VAR else value
    if not value:
        raise CredentialError(f"{sources.describe(name, env)}: export it first")
    return value
