"""Canary values in every secret variable, in the right shape and in the wrong one, through every
command's error paths: no 8-character piece of any canary may appear in stdout/stderr or in any file
the commands write (the 0600 gitlab-ci-local variables file, which holds secrets on purpose, excepted).

Shapes (issue 14): key text in HPC_SSH_PRIVATE_KEY (a "Variable" instead of a "File"), a path in
HPC_TOTP_SECRET, a code in HPC_PASSWORD, multi-line values, letters in HPC_OTP. Commands: deploy,
status, check-credentials (offline and --online), variables upload (dry run) and local, and the
post-gen hook. The cluster port has no server (the login's error paths up to the TCP connect); the
known_hosts, key and code paths are all before it.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from support.infra.ports import free_port
from support.render import TEMPLATE, render

COMMANDS = [
    ["deploy"],
    ["status", "--run-id", "p1"],
    ["check-credentials"],
    ["check-credentials", "--online"],
    ["variables", "upload", "--project", "g/p"],
    ["variables", "local"],
]


def new_key(directory: Path) -> tuple[Path, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    text = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    path = directory / f"id-{secrets.token_hex(4)}"
    path.write_text(text)
    path.chmod(0o600)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    Path(f"{path}.pub").write_bytes(pub + b"\n")
    return path, text


def secret_part(key_text: str) -> str:
    """The key's secret-bearing base64 (the armour and the constant openssh-key-v1 header are public)."""
    return "".join(key_text.strip().splitlines()[1:-1])[100:]


def shapes(tmp: Path) -> dict[str, tuple[dict, list[str]]]:
    """name -> (environment, canary strings)."""
    keys = tmp / "keys"
    keys.mkdir()
    right_key, right_text = new_key(keys)
    _, wrong_text = new_key(keys)
    path_canary = keys / f"CANARY{secrets.token_hex(6)}"
    path_canary.write_text("not a secret file")
    right = {
        "HPC_SSH_PRIVATE_KEY": str(right_key),
        "HPC_TOTP_SECRET": base64.b32encode(secrets.token_bytes(20)).decode(),
        "HPC_OTP": f"{secrets.randbelow(10**8):08d}",
        "HPC_PASSWORD": secrets.token_urlsafe(18),
        "WANDB_API_KEY": secrets.token_hex(20),
        "GITLAB_TOKEN": "glpat-" + secrets.token_urlsafe(15)[:20],
        "MLOPS_TRIGGER_TOKEN": "glptt-" + secrets.token_hex(20),
    }
    wrong = {
        "HPC_SSH_PRIVATE_KEY": wrong_text,
        "HPC_TOTP_SECRET": str(path_canary),
        "HPC_OTP": secrets.token_urlsafe(12),
        "HPC_PASSWORD": f"{secrets.randbelow(10**8):08d}",
        "WANDB_API_KEY": f"{secrets.token_hex(20)}\n{secrets.token_hex(8)}",
        "GITLAB_TOKEN": f"glpat-{secrets.token_urlsafe(15)}\r\n{secrets.token_hex(8)}",
        "MLOPS_TRIGGER_TOKEN": f"glptt-{secrets.token_hex(20)}\n{secrets.token_hex(8)}",
    }
    multi = {
        **right,
        "HPC_TOTP_SECRET": f"{base64.b32encode(secrets.token_bytes(10)).decode()}\n"
        f"{base64.b32encode(secrets.token_bytes(10)).decode()}",
        "HPC_OTP": "",
    }
    out = {}
    for name, env in (("right", right), ("wrong", wrong), ("multi-line", multi)):
        # a path's directories are this test's tmp dir (shown legitimately elsewhere): its unique name is the canary
        canaries = [
            Path(v).name if v == str(path_canary) else v for k, v in env.items() if k != "HPC_SSH_PRIVATE_KEY" and v
        ]
        canaries.append(secret_part(right_text if name != "wrong" else wrong_text))
        out[name] = (env, canaries)
    return out


def pieces(canaries: list[str], size: int = 8) -> set[str]:
    found = set()
    for value in canaries:
        for line in value.splitlines():
            line = line.strip()
            found.update(line[i : i + size] for i in range(max(1, len(line) - size + 1)) if len(line) >= size)
    return found


def leaks(text: str, marks: set[str]) -> list[str]:
    return sorted(m for m in marks if m in text)


def files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return render(
        tmp_path_factory.mktemp("canary"),
        hpc_host="127.0.0.1",
        hpc_port=str(free_port()),
        hpc_user="mlopshpc",
        hpc_auth="totp",
        wandb_mode="offline",
    )


@pytest.mark.parametrize("shape", ["right", "wrong", "multi-line"])
def test_no_piece_of_any_canary_in_any_output_or_file(project, tmp_path, shape):
    env_secrets, canaries = shapes(tmp_path)[shape]
    marks = pieces(canaries)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    known = project / ".gitlab" / "known_hosts"  # the project's pinned host keys
    host = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    port = next(
        line.split("=")[1].strip()
        for line in (project / "mlops.toml").read_text().splitlines()
        if line.startswith("port")
    )
    known.write_text(f"[127.0.0.1]:{port} {host}\n")
    (project / "images").mkdir(exist_ok=True)
    (project / "images" / "images.json").write_text('{"images": {}}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPC_", "WANDB", "GITLAB", "CI", "MLOPS_TRIGGER"))}
    env.update(HOME=str(home), TMPDIR=str(tmp_path), PYTHONPATH=str(project / "src"), **env_secrets)
    before = {**files(project), **files(home)}
    outputs = []
    for argv in COMMANDS:
        cp = subprocess.run(
            [sys.executable, "-m", "mlops", *argv],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert "Traceback" not in cp.stderr, (argv, cp.stderr[-3000:])
        outputs.append((argv, cp.stdout + cp.stderr))
    hook_out = tmp_path / "rendered"
    hook = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(TEMPLATE / 'tests')!r}); "
            f"from support.render import render; render({str(hook_out)!r})",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    outputs.append((["post-gen hook"], hook.stdout + hook.stderr))
    hits = [f"{' '.join(argv)}: {leaks(text, marks)[:3]}" for argv, text in outputs if leaks(text, marks)]
    local_vars = project / ".gitlab-ci-local-variables.yml"
    after = {**files(project), **files(home), **files(hook_out)}
    for path, data in after.items():
        if path == local_vars or before.get(path) == data:
            continue
        found = leaks(data.decode(errors="replace"), marks)
        if found:
            hits.append(f"{path}: {found[:3]}")
    local_vars.unlink(missing_ok=True)
    assert not hits, "\n".join(hits)
    joined = "\n".join(text for _, text in outputs)
    if shape == "wrong":  # the wrong shapes are named, by variable and shape, with the fix
        assert "HPC_OTP (set, " in joined and "a one-time code is 6 to 8 digits" in joined, joined
        assert "[FAIL] TOTP secret ($HPC_TOTP_SECRET): not valid base32" in joined, joined
        assert "HPC_SSH_PRIVATE_KEY (holds key text," in joined, joined
    assert "[" in joined and "credentials:" in joined
