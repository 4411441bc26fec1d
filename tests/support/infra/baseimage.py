"""A local Debian bookworm python base image, built without any registry.

Docker Hub is unreachable on the test machines, so Dockerfiles take their base
image as a build arg and tests feed them ``localhost/python-base:3.11`` built
here with debootstrap (~30-60 s, ~210 MB; cached by the caller's directory).

Everything goes into a PRIVATE containers store (``private_store``) so tests
never touch or depend on the machine's default /var/lib/containers store.
"""

import fcntl
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from ._util import InfraError, run

BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
DEFAULT_IMAGE = "localhost/python-base:3.11"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def debian_mirror(suite: str = "bookworm") -> str:
    """The Debian mirror apt uses here (deb822 *.sources or one-line *.list).

    The machine only reaches the Debian mirror it is configured with, so reuse
    it rather than hard-coding one.  Security/updates URIs are skipped.
    """
    for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(f).read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if suite in fields.get("Suites", "").split():
                for uri in fields.get("URIs", "").split():
                    if "security" not in uri:
                        return uri
    for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if not os.path.exists(f):
            continue
        for line in Path(f).read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == suite and "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def apt_proxy_env() -> dict:
    """http(s)_proxy for debootstrap (it uses wget, which ignores apt.conf).

    Taken from the environment or apt's Acquire::http::Proxy.  On the machine
    this was written on there is none (apt goes direct), so this returns {}.
    """
    env = {k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")}
    if not env:
        cp = subprocess.run(["apt-config", "dump", "Acquire::http::Proxy"], capture_output=True, text=True)
        m = re.search(r'Acquire::http::Proxy "([^"]+)"', cp.stdout)
        if m and m.group(1) not in ("DIRECT", "false"):
            env["http_proxy"] = m.group(1)
    return env


def build_base_rootfs(cache_dir, suite: str = "bookworm", packages=BASE_PACKAGES, timeout: float = 900) -> Path:
    """Return ``cache_dir/rootfs`` (a debootstrap minbase tree), building it once.

    A stamp file marks a complete build; a half-built tree from an interrupted
    run is discarded.  The caller picks ``cache_dir`` (e.g. a session-scoped
    dir, or a persistent one to reuse across sessions).
    """
    cache = Path(cache_dir)
    rootfs, stamp = cache / "rootfs", cache / "rootfs.ok"
    if stamp.exists() and rootfs.is_dir():
        return rootfs
    cache.mkdir(parents=True, exist_ok=True)
    # two sessions sharing a cache dir: the second waits, then reuses
    with open(cache / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and rootfs.is_dir():
            return rootfs
        return _debootstrap(cache, rootfs, stamp, suite, packages, timeout)


def _debootstrap(cache, rootfs, stamp, suite, packages, timeout):
    tmp = cache / f"rootfs.tmp{os.getpid()}"
    for stale in [rootfs, *cache.glob("rootfs.tmp*")]:
        shutil.rmtree(stale, ignore_errors=True)
    env = {**os.environ, **apt_proxy_env()}
    log = cache / "debootstrap.log"
    with open(log, "w") as fh:
        cp = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(packages),
                suite,
                str(tmp),
                debian_mirror(suite),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
        )
    if cp.returncode != 0:
        raise InfraError(
            f"debootstrap failed rc={cp.returncode}; tail:\n" + "\n".join(log.read_text().splitlines()[-30:])
        )
    # downloaded .debs and apt lists are ~60 MB of dead weight in an image
    for junk in glob.glob(f"{tmp}/var/cache/apt/archives/*.deb") + glob.glob(f"{tmp}/var/lib/apt/lists/*_*"):
        os.unlink(junk)
    tmp.rename(rootfs)
    stamp.write_text("ok\n")
    return rootfs


def private_store(workdir) -> dict:
    """Write a private storage.conf + containers.conf under ``workdir`` and
    return an env dict (copy of os.environ plus the overrides) for podman/buildah.

    WHY each setting: overlay graphroot/runroot so nothing lands in the shared
    default store; runc + cgroupfs because crun refuses the hybrid cgroup setup
    here; explicit ulimits because root lacks CAP_SYS_RESOURCE to raise the
    defaults; file events logger (no journald); private tmp_dir so the libpod
    lock/runtime files are not shared with /run/libpod; chroot isolation since
    OCI isolation fails at the first RUN (``STORAGE_DRIVER`` is ignored by
    buildah 1.28, so the conf file is the only reliable way).
    """
    w = Path(workdir)
    for sub in ("root", "run", "tmp", "volumes"):
        (w / sub).mkdir(parents=True, exist_ok=True)
    storage = w / "storage.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{w}/root"\nrunroot = "{w}/run"\n')
    conf = w / "containers.conf"
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]\n'
        f'[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'tmp_dir = "{w}/tmp"\nvolume_path = "{w}/volumes"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_CONF": str(conf),
        "BUILDAH_ISOLATION": "chroot",
    }


def image_exists(store_env: dict, name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], env=store_env, capture_output=True).returncode == 0


def import_base_image(store_env: dict, name: str = DEFAULT_IMAGE, rootfs=None, cache_dir=None) -> str:
    """Import the debootstrap tree as ``name`` into the store of ``store_env``.

    No-op if the store already has it.  Give ``rootfs`` or ``cache_dir``
    (then build_base_rootfs(cache_dir) is used).
    """
    if image_exists(store_env, name):
        return name
    if rootfs is None:
        if cache_dir is None:
            raise ValueError("need rootfs or cache_dir")
        rootfs = build_base_rootfs(cache_dir)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    try:
        run(
            ["podman", "import", "--change", f"ENV PATH={_PATH}", "--change", 'CMD ["python3"]', "-", name],
            stdin=tar.stdout,
            env=store_env,
            timeout=600,
        )
    finally:
        tar.stdout.close()
        tar.wait(60)
    return name


def save_archive(store_env: dict, name: str, dest, fmt: str = "docker-archive") -> Path:
    """``podman save`` ``name`` to an uncompressed archive at ``dest`` (for
    ``podman load`` on the "cluster" side, or ``ch-convert``)."""
    dest = Path(dest)
    if dest.exists():
        dest.unlink()  # podman save refuses to overwrite
    run(["podman", "save", "--format", fmt, "-o", str(dest), name], env=store_env, timeout=600)
    return dest


def destroy_store(store_env: dict, workdir) -> None:
    """Delete a private store made by ``private_store``.

    Not ``podman system reset``: for root it would also delete the machine's
    podman networks in /etc/containers/networks, which are not ours.  Removing
    containers and images first also unmounts their overlay layers.
    """
    for cmd in (["buildah", "rm", "--all"], ["podman", "rm", "-a", "-f"], ["podman", "rmi", "-a", "-f"]):
        subprocess.run(cmd, env=store_env, capture_output=True, timeout=300)
    shutil.rmtree(workdir, ignore_errors=True)
