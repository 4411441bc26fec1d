"""A real OCI registry (Debian's docker-registry = CNCF distribution 2.8) on
127.0.0.1:<free port> with its own config and storage.

The packaged service listens on :5000 on every interface: never start that; this
starts the binary with our own config.  Plain HTTP on loopback only, so pushes
need ``--tls-verify=false`` (buildah/podman/skopeo); TLS stays on for real registries.
"""

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from ._util import InfraError, Service, shared_tmpdir, stop_pid, wait_for
from .ports import free_port

BINARY = "/usr/bin/docker-registry"


class LocalRegistry(Service):
    """``with LocalRegistry() as reg: buildah push --tls-verify=false IMG docker://{reg.host}/x:y``.

    Attributes: host ('127.0.0.1:PORT'), url ('http://127.0.0.1:PORT'), port, workdir.
    """

    def __init__(self, workdir=None, port: int = None):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else shared_tmpdir("mlops-registry-")
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log_path = self.workdir / "registry.log"
        self._proc = None

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        cfg = self.workdir / "registry.yml"
        # debug server off, no notifications, delete enabled (tests may clean up)
        cfg.write_text(f"""version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.workdir}/data
  delete:
    enabled: true
http:
  addr: {self.host}
""")
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [BINARY, "serve", str(cfg)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

        def up():
            if self._proc.poll() is not None:
                raise InfraError(f"docker-registry exited rc={self._proc.returncode}")
            with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as r:
                return r.status == 200

        wait_for(up, 20, f"registry on {self.url}", logs=[self.log_path])
        return self

    def get_json(self, path: str):
        """GET ``/v2/...`` and decode JSON (e.g. ``tags('group/proj/model')``)."""
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as r:
            return json.load(r)

    def tags(self, repo: str) -> list:
        try:
            return self.get_json(f"/v2/{repo}/tags/list").get("tags") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise

    def catalog(self) -> list:
        return self.get_json("/v2/_catalog").get("repositories") or []

    def stop(self):
        if self._proc is not None:
            stop_pid(self._proc)
            self._proc = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _started(self) -> bool:
        return self._proc is not None
