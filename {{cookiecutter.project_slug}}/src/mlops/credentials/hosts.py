"""The cluster's host keys: what the project pins in `.gitlab/known_hosts` (read as the login reads it,
mlops.ssh), and a helper that finds the lines for a cluster's login node and jump host in the
user's own ~/.ssh/known_hosts, shows their fingerprints and, on request, copies them into the
project's file (`mlops known-hosts show|add`). Never ssh-keyscan: a key is only as good as the
person who compared its fingerprint with the one the cluster publishes.
"""

from __future__ import annotations

import base64
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import BadInput
from ..ssh import Endpoint, hostkeys, known_hosts
from .result import FAIL, MISSING, PASS, Result

if TYPE_CHECKING:
    from ..settings import Cluster, Settings

USER_FILE = Path("~/.ssh/known_hosts")
PINNED = known_hosts.PINNED  # the project's file, relative to its root (mlops.ssh.known_hosts)
CA = "@cert-authority"


def endpoints(cluster: Cluster) -> list[tuple[str, str, int]]:
    """(role, host, port) of the cluster's login node and, when set, its jump host."""
    out = [("login node", cluster.host, int(cluster.port))]
    if cluster.jump_host:
        hop = Endpoint.parse(cluster.jump_host, cluster.user)
        out.append(("jump host", hop.host, hop.port))
    return out


def check(s: Settings) -> list[Result]:
    """One line per host of the selected cluster: what `<root>/.gitlab/known_hosts` pins for it."""
    try:
        known: known_hosts.KnownHosts | None = known_hosts.load(known_hosts.pinned_path(s.root))
    except OSError:
        known = None
    results = []
    for role, host, port in endpoints(s.cluster):
        name = known_hosts.host_name(host, port)
        item = f"known_hosts entry for the {role} {name} of cluster {s.cluster.name} (in {PINNED})"
        fix = (
            f"`mlops known-hosts show --cluster {s.cluster.name}` shows the line your ~/.ssh/known_hosts has for "
            f"it (or `ssh-keygen -F '{name}'`); compare its fingerprint with the one the cluster publishes, "
            f"then `mlops known-hosts add --cluster {s.cluster.name}` and commit {PINNED}; never ssh-keyscan "
            "inside CI"
        )
        if known is None:
            results.append(Result(item, MISSING, "the file does not exist", fix))
            continue
        status, parts = hostkeys.pinned(known, host, port)  # as the login reads it
        skipped = f"; skipped: {'; '.join(known.warnings)}" if known.warnings else ""
        if status == "revoked":
            detail = f"every key and CA pinned for this host is marked @revoked{skipped}"
            results.append(Result(item, FAIL, detail, "ask the admins for the current host key and add its line"))
        elif status == "missing":
            results.append(Result(item, MISSING, f"no line for this host{skipped}", fix))
        else:
            results.append(Result(item, PASS, "pinned: " + ", ".join(parts) + skipped))
    return results


@dataclass
class Found:
    """The lines a known_hosts file has for one host (written under the name OpenSSH looks up)."""

    role: str
    name: str
    lines: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)  # "ssh-ed25519 SHA256:... (line 3)" per line


def _line(entry: known_hosts.Entry, name: str) -> str:
    """The entry as a line of the project file: under `name` (a hashed or multi-host field is not copied),
    except a CA's own host pattern (e.g. *.example.org), which is what the CA is trusted for."""
    hosts = entry.hosts if entry.marker == CA and not entry.hosts.startswith("|") else name
    return " ".join(x for x in (entry.marker, hosts, entry.keytype, base64.b64encode(entry.blob).decode()) if x)


def discover(s: Settings, source: Path = USER_FILE) -> list[Found]:
    """For each host of the selected cluster, the lines of `source` (default ~/.ssh/known_hosts) OpenSSH
    would use for it (`[host]:port`, else the port-less name). BadInput when the file cannot be read."""
    path = Path(os.path.expanduser(str(source)))
    try:
        known = known_hosts.load(path)
    except OSError as exc:
        raise BadInput(
            f"{source}: cannot be read ({type(exc).__name__}). Fix: connect once by hand (ssh -p PORT USER@HOST), "
            "compare the fingerprint ssh shows with the one the cluster publishes and accept it; or give --from FILE"
        ) from None
    out = []
    for role, host, port in endpoints(s.cluster):
        found = Found(role, known_hosts.host_name(host, port))
        for name in dict.fromkeys([known_hosts.host_name(host, port), known_hosts.host_name(host, 22)]):
            entries = known_hosts.matching(known, name)
            for e in entries:
                marker = f"{e.marker} " if e.marker else ""
                found.lines.append(_line(e, name))
                found.shown.append(f"{marker}{e.keytype} {e.fingerprint} (line {e.lineno}, as {name})")
            if entries:
                break
        out.append(found)
    return out


def show(s: Settings, source: Path = USER_FILE, out: TextIO | None = None) -> None:
    """`mlops known-hosts show`: the lines `discover` finds, with their fingerprints."""
    out = out or sys.stdout
    for found in discover(s, source):
        print(f"{found.role} {found.name} of cluster {s.cluster.name}, in {source}:", file=out)
        for line in found.shown or ["no line: connect once by hand (ssh), compare the fingerprint, accept it"]:
            print(f"  {line}", file=out)


def add(s: Settings, source: Path = USER_FILE, out: TextIO | None = None) -> tuple[Path, int]:
    """`mlops known-hosts add`: append the lines `discover` finds to `<root>/.gitlab/known_hosts` (those not
    there yet), atomically; prints each fingerprint; returns (the file, how many lines were added)."""
    out = out or sys.stdout
    found = discover(s, source)
    missing = [f.name for f in found if not f.lines]
    if missing:
        raise BadInput(
            f"{source} has no line for {', '.join(missing)} (cluster {s.cluster.name}); nothing was added. Fix: "
            "connect once by hand (ssh -p PORT USER@HOST), compare the fingerprint ssh shows with the one the "
            "cluster publishes, accept it, then run this again"
        )
    path = known_hosts.pinned_path(s.root)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    have = {line.strip() for line in text.splitlines()}
    new = [line for f in found for line in f.lines if line not in have]
    new = list(dict.fromkeys(new))
    if new:
        head = f"# cluster {s.cluster.name}: from {source} by `mlops known-hosts add`; fingerprints compared by hand\n"
        text = (text if not text or text.endswith("\n") else text + "\n") + head + "\n".join(new) + "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    for f in found:
        for line in f.shown:
            print(f"{f.role} {f.name}: {line}", file=out)
    print(
        f"{path}: {len(new)} line(s) added; compare the fingerprints above with the ones the cluster publishes, "
        "then commit it",
        file=out,
    )
    return path, len(new)
