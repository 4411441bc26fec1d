#!/bin/bash
# Second half of mlops-apptainer-root, inside its private mount namespace (as root):
#   inner.sh ROOT fuse|nofuse UID GID CWD PROGRAM ARGS...
# Sets up ROOT (the trixie root with Apptainer) and pivot_roots into it: not chroot, because the
# kernel refuses user namespaces to a chrooted process (EPERM) and unprivileged Apptainer needs
# them. Host paths a cluster user works in are bound at the same place. Then drops to UID:GID.
# Every mount goes away with the namespace when the last process in it exits.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
R=$1 dev=$2 uid=$3 gid=$4 cwd=$5 name=$6
shift 6
[[ $uid =~ ^[0-9]+$ && $gid =~ ^[0-9]+$ ]] || { echo "inner.sh: bad uid/gid" >&2; exit 2; }
pw="" gr=""
if [ "$uid" != 0 ]; then
  pw=$(getent passwd "$uid") || { echo "inner.sh: uid $uid has no passwd entry" >&2; exit 2; }
  gr=$(getent group "$gid") || gr="g$gid:x:$gid:"
fi
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
if [ "$dev" = fuse ]; then
  # a /dev of our own in which users can open /dev/fuse (a typical node; this host's is 0600)
  mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
  for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
  mknod -m 666 "$R/dev/fuse" c 10 229
  mknod -m 660 "$R/dev/loop-control" c 10 237
  mkdir "$R/dev/pts" "$R/dev/shm"
  mount --bind /dev/pts "$R/dev/pts"
  mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
  ln -s /proc/self/fd "$R/dev/fd"
  ln -s /proc/self/fd/0 "$R/dev/stdin"
  ln -s /proc/self/fd/1 "$R/dev/stdout"
  ln -s /proc/self/fd/2 "$R/dev/stderr"
else
  mount --rbind /dev "$R/dev"
fi
# the caller's passwd/group entries (Apptainer looks the user up and copies them into containers)
if [ -n "$pw" ]; then
  mkdir -p "$R/run/mlops"
  { cat "$R/etc/passwd"; echo "$pw"; } >"$R/run/mlops/passwd"
  { cat "$R/etc/group"; echo "$gr"; } >"$R/run/mlops/group"
  mount --bind "$R/run/mlops/passwd" "$R/etc/passwd"
  mount --bind "$R/run/mlops/group" "$R/etc/group"
fi
for p in /tmp /var/tmp /home /work; do
  if [ -d "$p" ]; then mkdir -p "$R$p"; mount --rbind "$p" "$R$p"; fi
done
mkdir -p "$R/.oldroot"
cd "$R"
pivot_root . .oldroot
cd /
umount -l /.oldroot
if [ "$uid" = 0 ]; then
  # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
  exec /bin/bash -c 'cd "$1" || exit 1; shift; exec "$@"' cdexec "$cwd" "$name" "$@"
fi
user=${pw%%:*}
home=$(echo "$pw" | cut -d: -f6)
mkdir -p "/run/user/$uid"
chown "$uid:$gid" "/run/user/$uid"
# setpriv to a non-zero uid: the kernel clears every capability; nothing of root stays
# shellcheck disable=SC2016 # $1 and $@ are the inner shell's
exec /usr/bin/setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
  /usr/bin/env -i HOME="$home" USER="$user" LOGNAME="$user" XDG_RUNTIME_DIR="/run/user/$uid" LANG=C.UTF-8 \
  PATH=/usr/local/bin:/usr/bin:/bin \
  /bin/bash -c 'cd "$1" || exit 1; shift; exec "$@"' cdexec "$cwd" "$name" "$@"
