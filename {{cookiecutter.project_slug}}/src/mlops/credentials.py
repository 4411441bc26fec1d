"""Check the cluster, W&B and GitLab credentials on this machine, without ever storing or printing them.

Where each one comes from (names in mlops.variables; the same names a CI job sees):
    SSH private key   the file at $HPC_SSH_PRIVATE_KEY (a path, as GitLab's file variables are),
                      else mlops.toml cluster.ssh_key (the template answer hpc_ssh_key; a PATH, never the key)
    known_hosts       the file at $HPC_KNOWN_HOSTS, else ~/.ssh/known_hosts
    TOTP secret       $HPC_TOTP_SECRET, else a hidden prompt (only with a person at a terminal)
    W&B API key       $WANDB_API_KEY, else a hidden prompt (only with a person at a terminal)
    GitLab token      $GITLAB_TOKEN (only `mlops variables upload` needs it)

Each check gives one line: PASS, MISSING (not set up yet) or FAIL (set up wrongly), with the fix.
Output never contains a secret, only lengths, kinds and public fingerprints, and it is deterministic
(the post-gen hook runs it, also inside `cruft update`). Offline by default; `online=True` also logs in
to the cluster (through mlops.transport, the code the pipeline uses) and asks GitLab about the token.
"""
from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import os
import re
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from .variables import BY_NAME
from .errors import BadInput

KEY_VAR = BY_NAME["HPC_SSH_PRIVATE_KEY"].name
KNOWN_HOSTS_VAR = BY_NAME["HPC_KNOWN_HOSTS"].name
TOTP_VAR = BY_NAME["HPC_TOTP_SECRET"].name
WANDB_VAR = BY_NAME["WANDB_API_KEY"].name
GITLAB_TOKEN_VAR = "GITLAB_TOKEN"                 # local only: the API token of `mlops variables upload`
STRICT_VAR = "MLOPS_STRICT_CREDENTIALS"           # "1": problems make the check (and the hook) exit non-zero
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"

PASS, MISSING, FAIL, SKIP = "PASS", "MISSING", "FAIL", "SKIP"


class CredentialError(BadInput):
    """A credential cannot be used; the message names it and the fix (CLI exit code 2)."""


@dataclass(frozen=True)
class Result:
    item: str      # what was checked, e.g. "SSH key"
    status: str    # PASS | MISSING | FAIL | SKIP
    detail: str    # what was found: never a secret
    fix: str = ""

    @property
    def problem(self) -> bool:
        return self.status in (MISSING, FAIL)

    def __str__(self) -> str:
        text = f"[{self.status}] {self.item}: {self.detail}"
        return text + (f"\n         fix: {self.fix}" if self.fix and self.problem else "")


def in_ci(env=os.environ) -> bool:
    return bool(env.get("CI") or env.get("GITLAB_CI"))


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob (public information)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# ------------------------------------------------------------------ SSH private key

@dataclass(frozen=True)
class KeyInfo:
    kind: str                 # e.g. ssh-ed25519, ssh-rsa, or "RSA (PEM)"
    encrypted: bool
    public_blob: bytes | None  # None when it cannot be derived without the passphrase


_PUBLIC_LINE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]{20,}")


def _read_string(buf: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack(">I", buf[pos:pos + 4])
    if pos + 4 + n > len(buf):
        raise ValueError("truncated field")
    return buf[pos + 4:pos + 4 + n], pos + 4 + n


def parse_private_key(text: str) -> KeyInfo:
    """What kind of private key `text` is, without needing its passphrase or any extra package.

    Raises ValueError with a sentence saying what the text is instead.
    """
    text = text.strip()
    if _PUBLIC_LINE.match(text):
        raise ValueError("is a PUBLIC key (one line starting with the key type), not a private key")
    if text.startswith("PuTTY-User-Key-File"):
        raise ValueError("is a PuTTY key; convert it: puttygen KEY.ppk -O private-openssh -o KEY")
    begin = re.match(r"-----BEGIN ([A-Z ]+)-----", text)
    if not begin or "PRIVATE KEY" not in begin.group(1):
        raise ValueError("is not a private key (no '-----BEGIN ... PRIVATE KEY-----' line)")
    label = begin.group(1)
    body_lines = [ln for ln in text.splitlines()[1:] if ln and not ln.startswith("-----") and ":" not in ln]
    try:
        body = base64.b64decode("".join(body_lines), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("has a damaged body (not base64); copy the file again") from None
    if label == "OPENSSH PRIVATE KEY":
        # openssh-key-v1: magic, cipher, kdf, kdf options, key count, public key (plain), private part.
        magic = b"openssh-key-v1\0"
        if not body.startswith(magic):
            raise ValueError("has a damaged OpenSSH key body")
        try:
            cipher, pos = _read_string(body, len(magic))
            _kdf, pos = _read_string(body, pos)
            _kdf_options, pos = _read_string(body, pos)
            (count,) = struct.unpack(">I", body[pos:pos + 4])
            public, pos = _read_string(body, pos + 4)
            private, pos = _read_string(body, pos)
            kind, _ = _read_string(public, 0)
        except (struct.error, ValueError):
            raise ValueError("has a damaged OpenSSH key body (truncated)") from None
        if count != 1:
            raise ValueError(f"holds {count} keys; use a file with exactly one")
        encrypted = cipher != b"none"
        # Unencrypted: two equal check integers start the private part; unequal means corruption.
        if not encrypted and (len(private) < 8 or private[:4] != private[4:8]):
            raise ValueError("has a damaged private part (check integers differ)")
        return KeyInfo(kind.decode(errors="replace"), encrypted, public)
    encrypted = label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in text
    kind = {"RSA PRIVATE KEY": "RSA (PEM)", "EC PRIVATE KEY": "ECDSA (PEM)", "DSA PRIVATE KEY": "DSA (PEM)"}.get(
        label, "PKCS#8 (PEM)")
    public = None
    if not encrypted:
        try:  # the public half of a PEM key needs real crypto; cryptography comes with paramiko
            from cryptography.hazmat.primitives import serialization
            key = serialization.load_pem_private_key(text.encode(), password=None)
            line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                 serialization.PublicFormat.OpenSSH)
            public = base64.b64decode(line.split()[1])
        except ImportError:
            public = None
        except Exception as exc:
            raise ValueError(f"does not parse as a private key ({type(exc).__name__})") from None
    return KeyInfo(kind, encrypted, public)


def key_path(answers: dict, env=os.environ) -> tuple[str, str]:
    """(the path as written, where it came from): $HPC_SSH_PRIVATE_KEY wins over mlops.toml."""
    if env.get(KEY_VAR, "").strip():
        return env[KEY_VAR].strip(), f"${KEY_VAR}"
    return str(answers.get("hpc_ssh_key") or "~/.ssh/id_ed25519"), "cluster.ssh_key"


def check_ssh_key(path_text: str, source: str = "cluster.ssh_key", ci: bool = False) -> Result:
    item = f"SSH key {path_text} (from {source})"
    path = Path(os.path.expanduser(path_text))
    if not path.is_file():
        return Result(item, MISSING, "no such file",
                      f"create a key for the cluster: ssh-keygen -t ed25519 -f {path_text}, register {path_text}.pub "
                      f"with the cluster (authorized_keys or the site's key portal), or point {source} at your key")
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        return Result(item, FAIL, f"cannot be read ({exc.strerror})", f"check the permissions of {path_text}")
    try:
        info = parse_private_key(text)
    except ValueError as exc:
        fix = (f"point {source} at the private key: the file WITHOUT .pub" if "PUBLIC" in str(exc)
               else f"point {source} at an OpenSSH private key file")
        return Result(item, FAIL, str(exc), fix)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Result(item, FAIL, f"is readable by other users (mode {mode:04o}); ssh refuses such keys",
                      f"chmod 600 {path_text}")
    if info.encrypted and ci:
        return Result(item, FAIL, f"{info.kind} key protected by a passphrase: a CI job cannot type it",
                      "give CI its own key without a passphrase (ssh-keygen -t ed25519 -N '' -f ~/.ssh/<project>-ci), "
                      f"registered on the cluster, as the protected file variable {KEY_VAR}")
    pub_path = Path(f"{path}.pub")
    if info.public_blob is not None and pub_path.is_file():
        parts = pub_path.read_text(errors="replace").split()
        try:
            pub_blob = base64.b64decode(parts[1], validate=True) if len(parts) >= 2 else b""
        except (binascii.Error, ValueError):
            pub_blob = b""
        if pub_blob != info.public_blob:
            return Result(item, FAIL, f"{path_text}.pub does not belong to this private key "
                          f"(key {fingerprint(info.public_blob)}, .pub {fingerprint(pub_blob) if pub_blob else 'unreadable'})",
                          f"regenerate it: ssh-keygen -y -f {path_text} > {path_text}.pub, and register that on the cluster")
        match = f"matches {path_text}.pub"
    elif info.public_blob is not None:
        match = f"no {path_text}.pub beside it (regenerate with ssh-keygen -y -f {path_text})"
    else:
        match = "public half not checked (PEM key with passphrase)"
    fp = f" {fingerprint(info.public_blob)}" if info.public_blob is not None else ""
    protection = ("protected by a passphrase (fine on a laptop with ssh-agent; CI needs an unencrypted key)"
                  if info.encrypted else "no passphrase")
    return Result(item, PASS, f"{info.kind}{fp}, mode {mode:04o}, {protection}, {match}")


# ------------------------------------------------------------------ known_hosts

def known_hosts_path(env=os.environ) -> tuple[str, str]:
    if env.get(KNOWN_HOSTS_VAR, "").strip():
        return env[KNOWN_HOSTS_VAR].strip(), f"${KNOWN_HOSTS_VAR}"
    return DEFAULT_KNOWN_HOSTS, "default"


def known_hosts_name(host: str, port: int) -> str:
    return host if int(port) == 22 else f"[{host}]:{port}"


def _host_matches(field: str, name: str) -> bool:
    if field.startswith("|1|"):  # hashed: |1|base64(salt)|base64(HMAC-SHA1(salt, name))
        try:
            salt, digest = (base64.b64decode(x) for x in field[3:].split("|", 1))
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    hit = False
    for pattern in field.split(","):
        negate = pattern.startswith("!")
        # OpenSSH patterns know only * and ?; '[host]:port' brackets are literal (not fnmatch classes).
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lstrip("!"))
        if re.fullmatch(regex, name, re.IGNORECASE):
            if negate:
                return False
            hit = True
    return hit


def known_hosts_entries(text: str, name: str) -> tuple[list[str], list[str]]:
    """(pinned lines, revoked lines) for host `name` (`host` or `[host]:port`)."""
    pinned, revoked = [], []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if len(fields) >= 3 and _host_matches(fields[0], name):
            (revoked if marker == "@revoked" else pinned).append(line.strip())
    return pinned, revoked


def endpoints(answers: dict) -> list[tuple[str, str, int]]:
    """(role, host, port) of the login node and, when set, the jump host."""
    out = [("cluster", str(answers.get("hpc_host", "")), int(answers.get("hpc_port") or 22))]
    jump = str(answers.get("hpc_jump_host") or "")
    if jump:
        hostport = jump.rpartition("@")[2]
        host, _, port = hostport.partition(":")
        out.append(("jump host", host, int(port or 22)))
    return out


def check_known_hosts(answers: dict, env=os.environ) -> list[Result]:
    path_text, source = known_hosts_path(env)
    path = Path(os.path.expanduser(path_text))
    results = []
    text = path.read_text(errors="replace") if path.is_file() else None
    for role, host, port in endpoints(answers):
        name = known_hosts_name(host, port)
        item = f"known_hosts entry for the {role} {name} (in {path_text}, {source})"
        fix = (f"get the host key fingerprint from the cluster's documentation or admins, connect once by hand "
               f"(ssh -o UserKnownHostsFile={path_text} -p {port} {host}) and accept only a matching fingerprint; "
               "never ssh-keyscan inside CI")
        if text is None:
            results.append(Result(item, MISSING, "the file does not exist", fix))
            continue
        pinned, revoked = known_hosts_entries(text, name)
        if revoked:
            results.append(Result(item, FAIL, "a key of this host is marked @revoked",
                                  "ask the admins for the current host key and replace the old line"))
        elif not pinned:
            results.append(Result(item, MISSING, "no line for this host", fix))
        else:
            prints = []
            for line in pinned:
                fields = [f for f in line.split() if not f.startswith("@")]
                try:
                    prints.append(f"{fields[1]} {fingerprint(base64.b64decode(fields[2], validate=True))}")
                except (binascii.Error, ValueError, IndexError):
                    results.append(Result(item, FAIL, "the line for this host has a damaged key", fix))
                    break
            else:
                results.append(Result(item, PASS, "pinned: " + ", ".join(prints)))
    return results


def known_hosts_lines(answers: dict, env=os.environ) -> str:
    """Only the lines pinning this project's hosts (what `mlops variables upload` sends as HPC_KNOWN_HOSTS)."""
    path_text, _ = known_hosts_path(env)
    path = Path(os.path.expanduser(path_text))
    if not path.is_file():
        raise CredentialError(f"{KNOWN_HOSTS_VAR}: no known_hosts file at {path_text}; "
                              "run `mlops check-credentials` for the fix")
    text, lines = path.read_text(errors="replace"), []
    for _, host, port in endpoints(answers):
        pinned, revoked = known_hosts_entries(text, known_hosts_name(host, port))
        if not pinned or revoked:
            raise CredentialError(f"{KNOWN_HOSTS_VAR}: {path_text} pins no usable key for "
                                  f"{known_hosts_name(host, port)}; run `mlops check-credentials` for the fix")
        lines += [ln for ln in pinned if ln not in lines]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ TOTP, W&B, GitLab

_BASE32 = re.compile(r"^[A-Z2-7]+=*$")


def normalize_totp(secret: str) -> str:
    """Portals show the secret in groups ('ABCD EFGH ...'); GitLab refuses to mask values with spaces."""
    return "".join(secret.split()).upper()


def check_totp(secret: str | None) -> Result:
    item = f"TOTP secret (${TOTP_VAR})"
    if not secret:
        return Result(item, MISSING, "not set",
                      f"export {TOTP_VAR} (the base32 secret behind your authenticator app) or type a code into "
                      "HPC_OTP when starting a cluster job")
    value = normalize_totp(secret)
    bad = sorted({c for c in value.rstrip("=") if c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"})
    if bad or not _BASE32.match(value):
        hint = " (base32 has no 0, 1, 8 or 9: read them as O, I, B, g?)" if set(bad) & set("0189") else ""
        return Result(item, FAIL, f"not valid base32: {len(bad)} kind(s) of character outside A-Z and 2-7{hint}",
                      "copy the secret again from your token's setup page (the text under the QR code)")
    bits = len(value.rstrip("=")) * 5
    if bits < 80:
        return Result(item, FAIL, f"too short for a TOTP secret ({bits} bits; at least 80 expected)",
                      "copy the whole secret from your token's setup page")
    from .transport import totp_now  # the same code the pipeline uses for the login
    try:
        code = totp_now(value)
    except Exception as exc:  # TransportError from a secret that decodes wrongly
        return Result(item, FAIL, f"does not yield codes ({exc})", "copy the secret again")
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
        return Result(item, MISSING, "not set",
                      f"export {WANDB_VAR} (https://wandb.ai/authorize); it is needed to sync runs from "
                      "the cluster (mode offline) or log to W&B (mode online)")
    for pattern, kind in _WANDB_FORMS:
        if pattern.match(key):
            return Result(item, PASS, f"{kind}")
    what = []
    if key != key.strip() or any(c.isspace() for c in key):
        what.append("contains spaces or line breaks")
    if any(c in key for c in "'\"`"):
        what.append("contains quotes")
    what.append(f"{len(key)} characters")
    return Result(item, FAIL, "malformed: " + ", ".join(what) + "; W&B keys are 40 characters, 'local-' + 40, "
                  "or 86 characters of letters, digits and '_'",
                  "copy the key again from https://wandb.ai/authorize (or your W&B server's settings)")


_GITLAB_OTHER_TOKENS = {
    "gldt-": "deploy token", "glptt-": "pipeline trigger token", "glrt-": "runner token",
    "glcbt-": "CI/CD job token", "gloas-": "OAuth application secret", "glft-": "feed token",
    "glimt-": "incoming mail token", "glsoat-": "SCIM token", "glagent-": "agent token",
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
            return Result(item, FAIL, f"is a {kind}, which cannot set CI/CD variables",
                          "create a project access token (role Maintainer, scope api) under Settings > Access tokens")
    return Result(item, FAIL, f"wrong shape ({len(token)} characters; expected 'glpat-' and at least 20 more "
                  "of letters, digits, '_', '-', '.')",
                  f"copy the token again, without quotes or spaces; if your instance uses a custom token prefix, "
                  "ask its admins")


def check_gitlab_online(token: str, url: str, timeout: float = 10) -> Result:
    """Scopes and expiry of the token, from GitLab itself (GET /personal_access_tokens/self)."""
    import datetime

    import gitlab  # python-gitlab, the [gitlab] extra
    item = f"GitLab token at {url}"
    try:
        gl = gitlab.Gitlab(url, private_token=token, timeout=timeout)
        info = gl.personal_access_tokens.get("self")
    except gitlab.exceptions.GitlabAuthenticationError:
        return Result(item, FAIL, "GitLab refused the token (revoked, expired or wrong instance)",
                      "create a new project access token with the api scope")
    except Exception as exc:
        return Result(item, FAIL, f"cannot ask GitLab ({type(exc).__name__}: {str(exc)[:200]})",
                      "check project.gitlab_host in mlops.toml and your network")
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


def check_ssh_online(answers: dict, env=os.environ) -> Result:
    """Log in for real, through mlops.transport (host key pinned, key, then one-time code), run `true`."""
    from . import transport
    host, port, user = str(answers["hpc_host"]), int(answers.get("hpc_port") or 22), str(answers["hpc_user"])
    item = f"SSH login {user}@{known_hosts_name(host, port)}"
    try:
        key = transport.load_private_key(os.path.expanduser(key_path(answers, env)[0]))
        known = transport.load_known_hosts(os.path.expanduser(known_hosts_path(env)[0]))
        endpoint = transport.Endpoint(host, port, user)
        jump = transport.Endpoint.parse(answers["hpc_jump_host"], user) if answers.get("hpc_jump_host") else None
        with transport.Session(endpoint, str(answers.get("hpc_auth", "totp")), key=key, known=known, jump=jump) as s:
            s.run("true", timeout=30)
    except transport.TransportError as exc:
        return Result(item, FAIL, str(exc), "see the message; `mlops check-credentials` without --online checks the files")
    except Exception as exc:  # paramiko's "Unable to connect" (an SSHException), a remote command failure
        if "Unable to connect" in str(exc) or isinstance(exc, OSError):
            return Result(item, FAIL, f"cannot reach {host}:{port} ({str(exc)[:200]})",
                          "check cluster.host/port in mlops.toml, your VPN or jump host (cluster.jump_host)")
        return Result(item, FAIL, f"{type(exc).__name__}: {str(exc)[:300]}", "see the message")
    return Result(item, PASS, "logged in and ran a command")


# ------------------------------------------------------------------ all checks

def _secret(name: str, env, prompt: bool) -> str | None:
    value = env.get(name, "")
    if value.strip() or not prompt:
        return value.strip() or None
    return getpass.getpass(f"{name} (input hidden, Enter to skip): ").strip() or None


def check_all(answers: dict, env=os.environ, interactive: bool = False, online: bool = False) -> list[Result]:
    """Every check that applies to these answers (mlops.toml seen as template options)."""
    ci = in_ci(env)
    path_text, source = key_path(answers, env)
    results = [check_ssh_key(path_text, source, ci=ci)]
    results += check_known_hosts(answers, env)
    if answers.get("hpc_auth") == "totp":
        results.append(check_totp(_secret(TOTP_VAR, env, interactive)))
    wandb_mode = str(answers.get("wandb_mode", "offline"))
    results.append(check_wandb_key(_secret(WANDB_VAR, env, interactive and wandb_mode != "disabled"), wandb_mode))
    token = env.get(GITLAB_TOKEN_VAR, "").strip() or None
    results.append(check_gitlab_token(token))
    if online:
        results.append(check_ssh_online(answers, env))
        if token and not results[-2].problem:
            host = str(answers.get("gitlab_host") or "gitlab.com")
            results.append(check_gitlab_online(token, f"https://{host}"))
    return results


def strict(env=os.environ) -> bool:
    return env.get(STRICT_VAR, "").strip().lower() in ("1", "true", "yes")


def report(results: list[Result], out=sys.stdout) -> int:
    """Print one line per check and a summary; returns the number of problems."""
    for result in results:
        print(str(result), file=out)
    problems = sum(r.problem for r in results)
    print(f"credentials: {problems} problem(s)" if problems else "credentials: all set", file=out)
    return problems


# ------------------------------------------------------------------ values for upload / local runs

def value_for(name: str, answers: dict, env=os.environ) -> str:
    """The value of a CI variable, taken from this machine, validated; raises CredentialError (never shows it)."""
    if name == KEY_VAR:
        path_text, source = key_path(answers, env)
        result = check_ssh_key(path_text, source, ci=True)  # CI cannot type a passphrase
        if result.problem:
            raise CredentialError(f"{KEY_VAR}: {result.detail}. Fix: {result.fix}")
        return Path(os.path.expanduser(path_text)).read_text()
    if name == KNOWN_HOSTS_VAR:
        return known_hosts_lines(answers, env)
    checks = {TOTP_VAR: check_totp, WANDB_VAR: lambda v: check_wandb_key(v, "online")}
    value = env.get(name, "").strip()
    if name in checks:
        result = checks[name](value or None)
        if result.problem:
            raise CredentialError(f"{name}: {result.detail}. Fix: {result.fix}")
        return normalize_totp(value) if name == TOTP_VAR else value
    if not value:
        raise CredentialError(f"{name}: not set; export it first")
    return value
