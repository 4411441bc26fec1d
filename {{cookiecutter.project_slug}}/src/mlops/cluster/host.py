"""scheduler = none: the sweep runs on the login host, in the background, K configurations at a time.

shell/runner.sh does params, data, the model tasks (xargs -P K) and the notification; it is started
with setsid so that it survives the SSH session and can be signalled as a process group.
"""

from __future__ import annotations

import shlex

from ..errors import WorkFailed
from ..remote import Remote


def start(session: Remote, run_dir: str, attempt: int, parallel: int, with_stages: bool) -> int:
    """Start shell/runner.sh for one attempt; returns its pid (the process group to signal)."""
    q = shlex.quote
    command = (
        f"cd {q(run_dir)} && setsid nohup bash state/jobs/runner.sh {q(run_dir)} {int(attempt)} "
        f"{int(parallel)} {1 if with_stages else 0} > state/runner-{int(attempt)}.log 2>&1 < /dev/null & echo $!"
    )
    _, stdout, _ = session.run(command)
    pids = [line.strip() for line in stdout.splitlines() if line.strip().isdigit()]
    if not pids:  # the last number: a login shell may print before the command's own output
        raise WorkFailed(f"the runner was started but gave no pid ({stdout.strip()[-200:]!r}): see `mlops status`")
    return int(pids[-1])


def stop(session: Remote, pid: int) -> None:
    """SIGTERM to the runner's process group (it is a session leader: setsid)."""
    session.run(f"kill -TERM -- -{int(pid)} 2>/dev/null; true", check=False)


def stop_all(session: Remote, run_dir: str) -> None:
    """SIGTERM to every runner of the run that recorded its pid (state/runner-N.pid, written by runner.sh)."""
    script = (
        'for f in "$1"/state/runner-*.pid; do [ -f "$f" ] || continue; pid=$(cat "$f"); '
        'case "$pid" in ""|*[!0-9]*) continue ;; esac; kill -TERM -- "-$pid" 2>/dev/null; done; true'
    )
    session.run(["bash", "-c", script, "stop", run_dir], check=False)
