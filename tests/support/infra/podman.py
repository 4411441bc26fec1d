"""Rootless podman (and charliecloud) for the ssh test user: the "cluster" side.

Two ways to configure the user's podman:
 * ``RootlessPodmanStore(user)`` (preferred): a PRIVATE store per instance.  Its
   ``.env`` (CONTAINERS_STORAGE_CONF, CONTAINERS_CONF, XDG_RUNTIME_DIR) goes
   into the sshd ``SetEnv`` (``TotpSshServer(setenv=...)``), so only sessions of
   that server use it; concurrent test sessions using the same unix user do not
   share images, locks or the pause process, and cleanup cannot hurt them.
 * ``setup_rootless_podman(user)`` / ``cleanup_rootless_podman(user)``: the
   user's global ~/.config/containers + default store (what a real cluster
   account looks like).  Its cleanup resets that user's whole store: do not use
   it while another session uses the same user.

What works on this machine kind (Debian bookworm, podman 4.3, runc 1.1.5):
 * rootless podman with ``~/.config/containers/storage.conf`` driver overlay
   (kernel overlay, no fuse-overlayfs needed) and containers.conf runtime=runc,
   cgroup_manager=cgroupfs, events_logger=file, explicit ulimits;
 * ``--network none`` only: slirp4netns cannot open /dev/net/tun here;
 * ``podman load -i archive.tar`` (uncompressed docker-archive) and
   ``zcat x.tar.gz | podman load`` (``-i x.tar.gz`` fails);
 * no XDG_RUNTIME_DIR over SSH (no pam_systemd): podman uses
   /tmp/podman-run-<uid> and leaves a "podman pause" process, which
   ``cleanup_rootless_podman`` stops by the PID in its pause.pid file.
See ``charliecloud_probe`` for charliecloud.
"""

import fcntl
import os
import pwd
import shutil
from pathlib import Path

from ._util import pid_alive, run, shared_tmpdir, stop_pid

STORAGE_CONF = '[storage]\ndriver = "overlay"\n'
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def user_env(user: str) -> dict:
    """A login-like environment for ``user`` (what an SSH exec session gets)."""
    pw = pwd.getpwnam(user)
    return {
        "HOME": pw.pw_dir,
        "USER": user,
        "LOGNAME": user,
        "SHELL": pw.pw_shell,
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
    }


def run_as(user: str, cmd, timeout: float = 300, check: bool = True, **kw):
    """Run ``cmd`` (list) as ``user`` locally, without su/PAM, in the user's home.

    Popen(user=...) keeps the process tree ours (no extra su process); the
    tests' main path is over SSH, this is for setup/cleanup.
    """
    pw = pwd.getpwnam(user)
    return run(
        cmd,
        timeout=timeout,
        check=check,
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        env={**user_env(user), **kw.pop("env", {})},
        cwd=pw.pw_dir,
        **kw,
    )


def ensure_subids(user: str, count: int = 65536) -> tuple:
    """Make sure /etc/subuid and /etc/subgid map ``count`` ids for ``user``.

    Rootless podman needs them (newuidmap from package uidmap); an existing
    entry is kept; a new one starts after the highest range already given out.
    Returns the (start, count) of the user's subuid range.
    """
    result = None
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent sessions: no duplicate lines
            fh.seek(0)
            lines = fh.read().splitlines()
            mine = [ln for ln in lines if ln.split(":")[0] == user]
            if mine:
                start, n = map(int, mine[0].split(":")[1:3])
            else:
                start = max(
                    [100000]
                    + [int(a) + int(b) for _, a, b in (ln.split(":")[:3] for ln in lines if ln.count(":") >= 2)]
                )
                n = count
                fh.write(f"{user}:{start}:{n}\n")
        result = result or (start, n)
    return result


class RootlessPodmanStore:
    """A private rootless podman store for ``user`` under ``workdir``.

    ``with RootlessPodmanStore("mlopshpc") as st:
    TotpSshServer(setenv={**st.env, ...})`` -> every ``podman``/``ch-convert``
    run in that server's sessions uses this store.  ``run(cmd)`` runs a command
    locally as the user with the same env.  Cleanup: remove containers, stop
    the pause process by its PID (from the private XDG_RUNTIME_DIR), delete.
    """

    def __init__(self, user: str, workdir=None):
        self.user = user
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else shared_tmpdir("mlops-pod-")
        w = self.workdir
        self.env = {
            "CONTAINERS_STORAGE_CONF": str(w / "storage.conf"),
            "CONTAINERS_CONF": str(w / "containers.conf"),
            # private runtime dir => private pause process + locks
            "XDG_RUNTIME_DIR": str(w / "xdg"),
        }

    def setup(self):
        pw = pwd.getpwnam(self.user)
        ensure_subids(self.user)
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        for sub in ("storage", "run", "xdg"):
            (w / sub).mkdir(mode=0o700, exist_ok=True)
            os.chown(w / sub, pw.pw_uid, pw.pw_gid)
        # rootless podman ignores ``graphroot`` from a non-home storage.conf and
        # uses ``rootless_storage_path``; set both.  Its libpod DB (graphroot/
        # libpod) remembers runroot/tmp_dir, so it must be private too, or a
        # session would inherit another one's paths.
        (w / "storage.conf").write_text(
            STORAGE_CONF + f'graphroot = "{w}/storage"\nrootless_storage_path = "{w}/storage"\nrunroot = "{w}/run"\n'
        )
        (w / "containers.conf").write_text(CONTAINERS_CONF + f'tmp_dir = "{w}/xdg/libpod/tmp"\n')
        for f in ("storage.conf", "containers.conf"):
            (w / f).chmod(0o644)
        cp = self.run(["podman", "info", "--format", "{{.Store.GraphRoot}}"], timeout=60)
        if cp.stdout.strip() != f"{w}/storage":  # never fall back to the shared home store
            raise RuntimeError(f"rootless podman uses {cp.stdout.strip()!r}, not {w}/storage")
        return self

    def run(self, cmd, **kw):
        return run_as(self.user, cmd, env={**self.env, **kw.pop("env", {})}, **kw)

    def our_pids(self) -> list:
        """The user's processes started with this store's XDG_RUNTIME_DIR
        (pause process, conmon, containers): identified by env, not by name."""
        uid = pwd.getpwnam(self.user).pw_uid
        needle = f"XDG_RUNTIME_DIR={self.env['XDG_RUNTIME_DIR']}".encode()
        pids = []
        for d in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.stat(f"/proc/{d}").st_uid == uid and needle in Path(f"/proc/{d}/environ").read_bytes().split(
                    b"\0"
                ):
                    pids.append(int(d))
            except OSError:
                continue
        return [p for p in pids if pid_alive(p)]

    def cleanup(self):
        if (self.workdir / "storage.conf").exists():
            self.run(["podman", "rm", "-a", "-f"], check=False, timeout=120)
        for pid in self.our_pids():
            stop_pid(pid, timeout=5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.setup()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


def _pause_pid_from(runtime_dir: Path, uid: int) -> list:
    f = runtime_dir / "libpod" / "tmp" / "pause.pid"
    try:
        pid = int(f.read_text().strip())
        # only if it still belongs to that user (PIDs get reused)
        if os.stat(f"/proc/{pid}").st_uid == uid and pid_alive(pid):
            return [pid]
    except (OSError, ValueError):
        pass
    return []


def setup_rootless_podman(user: str, home=None, reset: bool = False) -> dict:
    """Configure rootless podman for ``user``; returns the written paths.

    Writes ~/.config/containers/{storage,containers}.conf (owned by the user),
    adds subuid/subgid entries if missing, and (``reset``) wipes a store left
    by an earlier session, e.g. one created with the vfs driver, which podman
    would refuse to open with overlay ("database graph driver mismatch").
    Global to the user: prefer RootlessPodmanStore when sessions may overlap.
    """
    pw = pwd.getpwnam(user)
    home = Path(home or pw.pw_dir)
    subids = ensure_subids(user)
    if reset:
        cleanup_rootless_podman(user)
    cfgdir = home / ".config" / "containers"
    cfgdir.mkdir(parents=True, exist_ok=True)
    (cfgdir / "storage.conf").write_text(STORAGE_CONF)
    (cfgdir / "containers.conf").write_text(CONTAINERS_CONF)
    for d in (home / ".config", cfgdir, cfgdir / "storage.conf", cfgdir / "containers.conf"):
        os.chown(d, pw.pw_uid, pw.pw_gid)
    if reset:  # re-read subuid ranges, restart the user namespace holder
        run_as(user, ["podman", "system", "migrate"], check=False, timeout=60)
    return {"storage_conf": cfgdir / "storage.conf", "containers_conf": cfgdir / "containers.conf", "subuid": subids}


def pause_pids(user: str) -> list:
    """PIDs of the user's rootless "podman pause" process (from pause.pid files)."""
    uid = pwd.getpwnam(user).pw_uid
    return [p for base in (f"/tmp/podman-run-{uid}", f"/run/user/{uid}") for p in _pause_pid_from(Path(base), uid)]


def cleanup_rootless_podman(user: str):
    """Remove the user's containers/images (``podman system reset -f``) and
    stop the leftover pause process by PID.  Safe to call when nothing is there,
    NOT while another session uses podman as the same user."""
    run_as(user, ["podman", "system", "reset", "-f"], check=False, timeout=120)
    for pid in pause_pids(user):
        stop_pid(pid, timeout=5)
    uid = pwd.getpwnam(user).pw_uid
    for d in (f"/tmp/podman-run-{uid}", f"/tmp/containers-user-{uid}"):  # runtime dirs
        shutil.rmtree(d, ignore_errors=True)


def fuse_usable_by_others() -> bool:
    """True if /dev/fuse exists and is rw for non-root users (SquashFUSE, fuse-overlayfs)."""
    try:
        return os.stat("/dev/fuse").st_mode & 0o006 == 0o006
    except OSError:
        return False


def export_rootfs_cmd(image: str, dest: str) -> str:
    """Shell command (run as the user) unpacking ``image`` from the user's podman
    store into directory ``dest`` for ``ch-run``.  ~1.5 s for a 200 MB image,
    versus ~20 s for ``ch-convert -i podman`` (which gzips then unpacks)."""
    return (
        f"c=$(podman create {image}) && mkdir -p {dest} && podman export $c | "
        f"tar -C {dest} -xf -; rc=$?; podman rm $c >/dev/null 2>&1; exit $rc"
    )


def charliecloud_probe(sh, image: str, workdir: str, try_convert: bool = True) -> dict:
    """Find out which charliecloud paths work for the user behind ``sh``.

    ``sh(cmd) -> (rc, stdout, stderr)`` runs a shell command as the user (e.g.
    ``lambda c: exec_command(transport, c)``).  ``image`` must already be in the
    user's podman store; ``workdir`` must be writable by the user.
    Returns {path: (ok, detail)} for 'ch-convert -i podman' (dir output),
    'podman export | tar', 'ch-run' (bind mount + python3 in the image) and
    'squash' (needs /dev/fuse usable by the user; it is 0600 root here, so
    reported as not working without trying), plus 'dir': a usable image dir.
    Seen here: ch-convert -i podman ~20 s OK, export|tar ~1.5 s OK, ch-run OK,
    squash: "fuse: failed to open /dev/fuse: Permission denied".
    """
    res, d = {}, None
    if try_convert:
        rc, out, err = sh(f"rm -rf {workdir}/ch-conv; ch-convert -i podman {image} {workdir}/ch-conv")
        res["ch-convert -i podman"] = (rc == 0, (out + err)[-800:])
        d = f"{workdir}/ch-conv" if rc == 0 else None
    rc, out, err = sh(f"rm -rf {workdir}/ch-exp; " + export_rootfs_cmd(image, f"{workdir}/ch-exp"))
    res["podman export | tar"] = (rc == 0, (out + err)[-800:])
    d = d or (f"{workdir}/ch-exp" if rc == 0 else None)
    if d:
        # bind targets must exist in the (read-only) image: /mnt does
        rc, out, err = sh(
            f"mkdir -p {workdir}/ch-bind && echo canary > {workdir}/ch-bind/f && "
            f"ch-run --bind={workdir}/ch-bind:/mnt --cd=/mnt {d} -- "
            "python3 -c 'import sys; print(open(\"f\").read().strip(), sys.version_info[0])'"
        )
        res["ch-run"] = (rc == 0 and "canary 3" in out, (out + err)[-800:])
        res["dir"] = d
    if not fuse_usable_by_others():
        res["squash"] = (False, "/dev/fuse missing or not rw for other users (SquashFUSE needs it)")
    else:
        rc, out, err = sh(
            f"rm -f {workdir}/img.sqfs; ch-convert -i podman -o squash {image} "
            f"{workdir}/img.sqfs && ch-run {workdir}/img.sqfs -- true"
        )
        res["squash"] = (rc == 0, (out + err)[-800:])
    return res
