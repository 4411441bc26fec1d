"""Run `mlops collect` in this process under a file-size limit (RLIMIT_FSIZE) and print the outcome as
one JSON line ["ok" | error class name, message]: how a full disk on the runner looks to collect.

    python collect_with_fsize_limit.py SYS_PATH_JSON PROJECT_ROOT CLUSTER_WORKDIR LIMIT_BYTES

SIGXFSZ is ignored, so a write past the limit fails with EFBIG instead of killing the process. The
session is support.local_shell.SessionLike: like the real Session, it turns an OSError raised inside
its read loop into ConnectionLost.
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[:0] = json.loads(sys.argv[1])
    from mlops.errors import MlopsError
    from mlops.results import collect
    from support import results_settings
    from support.local_shell import SessionLike

    cfg = results_settings.make(Path(sys.argv[2]), Path(sys.argv[3]))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        collect.collect(SessionLike({"PATH": os.environ["PATH"]}), cfg, "p1", Path("results"), out=io.StringIO())
        print(json.dumps(["ok", ""]))
    except MlopsError as exc:
        print(json.dumps([type(exc).__name__, str(exc)]))
