"""The cluster account's SSH private key on this machine: found, parsed, mode 0600, matching its .pub.

Where it comes from (mlops.ssh.keys, the same code the login uses): $HPC_SSH_PRIVATE_KEY, a path (a
GitLab "File" variable) or the key text (a plain "Variable" by mistake: read from memory, never
written), else the cluster's `ssh_key` in mlops.toml (a PATH, never the key), else ~/.ssh/id_ed25519.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from .. import civars
from ..ssh import keys
from ..ssh.known_hosts import fingerprint
from .result import FAIL, MISSING, PASS, CredentialError, Result

KEY_VAR = civars.KEY


def source(setting: str, env: Mapping[str, str] = os.environ) -> keys.KeySource:
    """Where the key comes from for a cluster whose `ssh_key` setting is `setting` ("" = the default)."""
    return keys.source(env, setting or None)


def key_path(setting: str, env: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(a path that may be shown, where it came from): $HPC_SSH_PRIVATE_KEY wins over the setting.

    Raises CredentialError when the variable holds key text (there is no path to give)."""
    src = source(setting, env)
    if src.text is not None:
        raise CredentialError(
            f"{src.label}: holds the key itself, not a path. Fix: save the key to a file of mode "
            f"0600 and set {KEY_VAR} to that path (a GitLab File variable)"
        )
    if env.get(KEY_VAR, "").strip():
        return env[KEY_VAR].strip(), f"${KEY_VAR}"
    return setting or keys.DEFAULT_KEY, "ssh_key"


def check(setting: str, env: Mapping[str, str] = os.environ, ci: bool = False) -> Result:
    """The private key: exists, parses, mode 0600, no passphrase in CI, matches its .pub. Never shows key text."""
    src = source(setting, env)
    item = f"SSH key, {src.label}"
    from_env = bool(env.get(KEY_VAR, "").strip())
    shown = (
        None
        if src.text is not None or (from_env and not (src.path and src.path.is_file()))
        else (env[KEY_VAR].strip() if from_env else setting or keys.DEFAULT_KEY)
    )
    ref = shown or f"the file {KEY_VAR} names"
    where = f"${KEY_VAR}" if from_env else "the cluster's ssh_key in mlops.toml"
    if src.text is None and not (src.path and src.path.is_file()):
        fix = (
            f"set {KEY_VAR} to the path of the private key file (a GitLab File variable)"
            if from_env
            else f"create a key for the cluster: ssh-keygen -t ed25519 -f {shown}, register {shown}.pub with the "
            "cluster (authorized_keys or the site's key portal), or point ssh_key in mlops.toml at your key"
        )
        return Result(item, MISSING, "no such file", fix)
    try:
        text = keys.read_text(src)
    except keys.KeyProblem:
        return Result(item, FAIL, "cannot be read", f"check the permissions of {ref}")
    try:
        info = keys.inspect(text)
    except ValueError as exc:
        what = "the private key: the file WITHOUT .pub" if "PUBLIC" in str(exc) else "an OpenSSH private key file"
        return Result(item, FAIL, str(exc), f"point {where} at {what}")
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
    match = _public_half(info, path, ref)
    if isinstance(match, Result):
        return Result(item, match.status, match.detail, match.fix)
    protection = (
        "protected by a passphrase (fine on a laptop with ssh-agent; CI needs an unencrypted key)"
        if info.encrypted
        else "no passphrase"
    )
    return Result(item, PASS, f"{info.kind}{fp}, mode {mode:04o}, {protection}, {match}")


def _public_half(info: keys.KeyInfo, path: Path, ref: str) -> str | Result:
    """How the key's .pub relates to it: a phrase, or a FAIL Result when it belongs to another key."""
    pub_path = Path(f"{path}.pub")
    if info.public_blob is None:
        return "public half not checked (PEM key with passphrase)"
    if not pub_path.is_file():
        return f"no {ref}.pub beside it (regenerate with ssh-keygen -y -f {ref})"
    parts = pub_path.read_text(errors="replace").split()
    try:
        pub_blob = base64.b64decode(parts[1], validate=True) if len(parts) >= 2 else b""
    except (binascii.Error, ValueError):
        pub_blob = b""
    if pub_blob != info.public_blob:
        return Result(
            "",
            FAIL,
            f"{ref}.pub does not belong to this private key "
            f"(key {fingerprint(info.public_blob)}, .pub {fingerprint(pub_blob) if pub_blob else 'unreadable'})",
            f"regenerate it: ssh-keygen -y -f {ref} > {ref}.pub, and register that on the cluster",
        )
    return f"matches {ref}.pub"


def key_text(setting: str, env: Mapping[str, str] = os.environ) -> str:
    """The key's text for a CI variable, checked as CI needs it (no passphrase); CredentialError otherwise."""
    result = check(setting, env, ci=True)
    if result.problem:
        raise result.error()
    return keys.read_text(source(setting, env))
