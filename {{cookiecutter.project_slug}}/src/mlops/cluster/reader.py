"""What the cluster says about a run: its state files and SLURM's view, each in ONE remote command.

The login node needs bash, coreutils, find, tar and gzip (shell/read_state.sh, sent on stdin): no
Python there, so a login node whose python3 is 3.6 (RHEL 8, CentOS 7) or absent reads runs like any
other. The answer starts after a nonce chosen here for each command, so whatever a login shell
printed before the command (a `~/.bashrc` that echoes) is never taken for the answer. Everything
read is untrusted data: a capped stream (gzip and tar over at most MAX_STREAM_BYTES compressed and
MAX_TAR_BYTES decompressed bytes), regular files only, each under its cap, names of our own shape;
mlops.cluster.records then checks every field.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import secrets
import shlex
import tarfile
import zlib
from importlib import resources

from ..capped import CappedReader
from ..errors import WorkFailed
from ..remote import Remote
from . import slurm

MAX_STREAM_BYTES = 16 << 20  # compressed state of one run (10,000 task records are ~0.5 MB)
MAX_TAR_BYTES = 64 << 20  # the same decompressed: also the bound of any tar header tarfile reads
MAX_FILE_BYTES = 4 << 20  # one state file
MAX_LISTED_RUNS = 100_000
# The files read_state.sh sends, by name -> what they become in the raw state
_SINGLE = ("run.json", "state/jobs.json", "state/notify.json", "state/collected.json")
_TASK = re.compile(r"state/tasks/([0-9a-f]{6,64})\.json")
_PROGRESS = re.compile(r"state/jobs/submitted-([0-9]{1,9})\.txt")


class _CappedBuffer:
    """The session writes a remote stdout here; past `limit` bytes the rest is dropped and noted."""

    def __init__(self, limit: int):
        self.buffer, self.limit, self.cut = io.BytesIO(), limit, False

    def write(self, chunk: bytes) -> int:
        room = self.limit - self.buffer.tell()
        if len(chunk) > room:
            self.cut = True
            chunk = chunk[: max(room, 0)]
        return self.buffer.write(chunk)


def _script() -> bytes:
    return resources.files(__package__).joinpath("shell/read_state.sh").read_bytes()


def _ask(session: Remote, mode: str, target: str, timeout: float = 120) -> tuple[str, bytes, bool]:
    """Run read_state.sh; returns (the header line after the nonce, the bytes after it, cut)."""
    nonce = secrets.token_hex(12)
    out = _CappedBuffer(MAX_STREAM_BYTES + 4096)
    command = f"bash -s -- {mode} {shlex.quote(target)} {nonce} {MAX_STREAM_BYTES}"
    rc, _, err = session.run(command, stdin=_script(), stdout=out, check=False, timeout=timeout)
    data = out.buffer.getvalue()
    at = data.find(nonce.encode() + b" ")
    if rc != 0 or at < 0:
        said = err.strip().splitlines()[-1][:300] if err.strip() else f"exit {rc}"
        raise WorkFailed(f"reading {target} on the cluster failed ({said}): is bash on the login node?")
    end = data.find(b"\n", at)
    end = len(data) if end < 0 else end
    header = data[at + len(nonce) + 1 : end].decode("ascii", errors="replace")
    return header, data[end + 1 :], out.cut


def list_runs(session: Remote, runs_dir: str) -> list[tuple[str, bool]]:
    """[(directory name, has state/collected.json)] of `runs_dir` (names untrusted: the caller checks them)."""
    header, body, _ = _ask(session, "list", runs_dir)
    if header != "runs":
        raise WorkFailed(f"listing {runs_dir} on the cluster gave an unexpected answer")
    found = []
    for line in body.decode("utf-8", errors="replace").splitlines()[:MAX_LISTED_RUNS]:
        name, _, collected = line.partition(" ")
        found.append((name, collected == "1"))
    return found


def _members(stream: bytes, bad: list[str]) -> dict[str, bytes]:
    """{name: content} of the regular files of the capped tar.gz stream; a cut stream keeps what came."""
    files: dict[str, bytes] = {}
    raw = CappedReader(gzip.GzipFile(fileobj=io.BytesIO(stream)), MAX_TAR_BYTES, "the state stream")
    try:
        with tarfile.open(fileobj=raw, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                if not member.isreg() or member.size > MAX_FILE_BYTES:
                    bad.append(f"{member.name[:80]!r}: not a regular file of at most {MAX_FILE_BYTES:,} bytes")
                    continue
                fh = tar.extractfile(member)
                if fh is not None:
                    files[member.name] = fh.read()
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        if stream:  # an empty stream is a run without state files yet
            bad.append(f"the state stream ended early ({type(exc).__name__}); what came before is used")
    return files


def _json(files: dict[str, bytes], name: str, bad: list[str], default: object = None) -> object:
    if name not in files:
        return default
    try:
        return json.loads(files[name].decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        bad.append(f"{name.rsplit('/', 1)[-1]}: {type(exc).__name__}")
        return default


def read_run(session: Remote, run_dir: str) -> dict:
    """The raw (untrusted) state of one run, as mlops.cluster.records.clean takes it:
    {"exists", "attempts", "index", "records", "stages", "notify", "collected", "run", "progress",
    "runner_alive", "bad"}. Raises WorkFailed when the cluster does not answer at all."""
    header, stream, cut = _ask(session, "run", run_dir)
    words = dict(w.partition("=")[::2] for w in header.split())
    if words.get("exists") != "1":
        return {"exists": False, "bad": []}
    cut = cut or len(stream) >= MAX_STREAM_BYTES  # read_state.sh stops at the cap (head -c)
    bad: list[str] = (
        [f"the state stream passed its cap ({MAX_STREAM_BYTES:,} bytes); later files were not read"] if cut else []
    )
    if words.get("pids") == "bad":
        bad.append("state/runner-N.pid: not a pid")
    files = _members(stream, bad)
    ids = files.get("envs/ids.txt", b"").decode("utf-8", errors="replace").splitlines()
    stages: dict[str, object] = {}
    for name in ("params", "data"):
        text = files.get(f"state/{name}.rc", b"").decode("ascii", errors="replace").strip()
        if text.isdigit() and len(text) < 6:
            stages[name] = int(text)
        elif f"state/{name}.rc" in files:
            bad.append(f"{name}.rc: not a number")
    records = {}
    progress = {}
    for name, data in files.items():
        task, step = _TASK.fullmatch(name), _PROGRESS.fullmatch(name)
        if task:
            records[task.group(1)] = _json(files, name, bad)
        elif step:
            progress[step.group(1)] = data.decode("utf-8", errors="replace").split("\n")
    return {
        "exists": True,
        "attempts": _json(files, "state/jobs.json", bad, []),
        "index": [{"index": i, "config_id": cid.strip()} for i, cid in enumerate(ids)],
        "records": records,
        "stages": stages,
        "notify": _json(files, "state/notify.json", bad),
        "collected": _json(files, "state/collected.json", bad),
        "run": _json(files, "run.json", bad),
        "progress": progress,
        "runner_alive": {"1": True, "0": False}.get(words.get("alive", "-")),
        "bad": bad,
    }


def scheduler_view(session: Remote, job_ids: list[str]) -> dict[str, str] | None:
    """SLURM's states of these jobs, {'<job>' or '<job>_<task>': STATE}: sacct where accounting
    exists, else `scontrol show job` (kept MinJobAge seconds after a job ends). None when SLURM
    did not answer at all (then no job may be taken for forgotten). `job_ids`: validated ids."""
    if not job_ids:
        return {}
    rc, out, _ = session.run(
        f"sacct -n -P -X -j {shlex.quote(','.join(job_ids))} -o JobID,State", check=False, timeout=60
    )
    if rc == 0 and out.strip():
        return slurm.parse_sacct(out)
    # One scontrol per job; "Invalid job id" means SLURM has forgotten it, any other failure that
    # SLURM could not be asked.
    script = 'for j in "$@"; do scontrol -o show job "$j" 2>&1 || echo "MLOPS-SCONTROL-FAILED"; done; true'
    _, out, _ = session.run(["bash", "-c", script, "scontrol", *job_ids], check=False, timeout=60)
    failures = out.count("MLOPS-SCONTROL-FAILED")
    if failures and failures == len(job_ids) and failures > out.count("Invalid job id"):
        return None
    return slurm.parse_scontrol(out)
