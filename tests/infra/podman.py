"""Rootless podman (and charliecloud) for the ssh test user: the "cluster" side.

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
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from ._util import pid_alive, run, stop_pid

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
    return {"HOME": pw.pw_dir, "USER": user, "LOGNAME": user, "SHELL": pw.pw_shell,
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}


def run_as(user: str, cmd, timeout: float = 300, check: bool = True, **kw):
    """Run ``cmd`` (list) as ``user`` locally, without su/PAM, in the user's home.

    Popen(user=...) keeps the process tree ours (no extra su process); the
    tests' main path is over SSH, this is for setup/cleanup.
    """
    pw = pwd.getpwnam(user)
    return run(cmd, timeout=timeout, check=check, user=pw.pw_uid, group=pw.pw_gid,
               extra_groups=[], env={**user_env(user), **kw.pop("env", {})},
               cwd=pw.pw_dir, **kw)


def ensure_subids(user: str, count: int = 65536) -> tuple:
    """Make sure /etc/subuid and /etc/subgid map ``count`` ids for ``user``.

    Rootless podman needs them (newuidmap from package uidmap); an existing
    entry is kept; a new one starts after the highest range already given out.
    Returns the (start, count) of the user's subuid range.
    """
    result = None
    for path in ("/etc/subuid", "/etc/subgid"):
        p = Path(path)
        lines = p.read_text().splitlines() if p.exists() else []
        mine = [l for l in lines if l.split(":")[0] == user]
        if mine:
            start, n = map(int, mine[0].split(":")[1:3])
        else:
            start = max([100000] + [int(a) + int(b) for _, a, b in
                                    (l.split(":")[:3] for l in lines if l.count(":") >= 2)])
            n = count
            with p.open("a") as fh:
                fh.write(f"{user}:{start}:{n}\n")
        result = result or (start, n)
    return result


def setup_rootless_podman(user: str, home=None, reset: bool = True) -> dict:
    """Configure rootless podman for ``user``; returns the written paths.

    Writes ~/.config/containers/{storage,containers}.conf (owned by the user),
    adds subuid/subgid entries if missing, and (``reset``) wipes a store left
    by an earlier session, e.g. one created with the vfs driver, which podman
    would refuse to open with overlay ("database graph driver mismatch").
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
    # re-read subuid ranges and restart the user namespace holder
    run_as(user, ["podman", "system", "migrate"], check=False, timeout=60)
    return {"storage_conf": cfgdir / "storage.conf",
            "containers_conf": cfgdir / "containers.conf", "subuid": subids}


def pause_pids(user: str) -> list:
    """PIDs of the user's rootless "podman pause" process (from pause.pid files)."""
    uid = pwd.getpwnam(user).pw_uid
    pids = []
    for base in (f"/tmp/podman-run-{uid}", f"/run/user/{uid}"):
        f = Path(base) / "libpod" / "tmp" / "pause.pid"
        try:
            pid = int(f.read_text().strip())
        except (OSError, ValueError):
            continue
        try:  # only if it still belongs to that user (PIDs get reused)
            if os.stat(f"/proc/{pid}").st_uid == uid and pid_alive(pid):
                pids.append(pid)
        except OSError:
            pass
    return pids


def cleanup_rootless_podman(user: str):
    """Remove the user's containers/images (``podman system reset -f``) and
    stop the leftover pause process by PID.  Safe to call when nothing is there."""
    run_as(user, ["podman", "system", "reset", "-f"], check=False, timeout=120)
    for pid in pause_pids(user):
        stop_pid(pid, timeout=5)


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
    return (f"c=$(podman create {image}) && mkdir -p {dest} && podman export $c | "
            f"tar -C {dest} -xf -; rc=$?; podman rm $c >/dev/null 2>&1; exit $rc")


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
        rc, out, err = sh(f"mkdir -p {workdir}/ch-bind && echo canary > {workdir}/ch-bind/f && "
                          f"ch-run --bind={workdir}/ch-bind:/mnt --cd=/mnt {d} -- "
                          "python3 -c 'import sys; print(open(\"f\").read().strip(), sys.version_info[0])'")
        res["ch-run"] = (rc == 0 and "canary 3" in out, (out + err)[-800:])
        res["dir"] = d
    if not fuse_usable_by_others():
        res["squash"] = (False, "/dev/fuse missing or not rw for other users (SquashFUSE needs it)")
    else:
        rc, out, err = sh(f"rm -f {workdir}/img.sqfs; ch-convert -i podman -o squash {image} "
                          f"{workdir}/img.sqfs && ch-run {workdir}/img.sqfs -- true")
        res["squash"] = (rc == 0, (out + err)[-800:])
    return res
