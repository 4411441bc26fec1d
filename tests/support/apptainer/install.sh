#!/usr/bin/env bash
# Install a real Apptainer (Debian sid's package) for the tests, under PREFIX (default
# /opt/mlops-apptainer). Needs root. Apptainer is not in Debian bookworm and sid's build needs
# glibc >= 2.38, so it lives in a debootstrapped Debian trixie root that the wrappers enter with
# pivot_root (see README.md here: how Apptainer runs in the tests). ~4.5 min, ~280 MB.
#   PREFIX/root/               the trixie root with apptainer, squashfuse, fuse-overlayfs, fuse2fs
#   PREFIX/bin/mlops-apptainer-root  root wrapper: enter the root, drop to the calling user, exec apptainer
#   PREFIX/lib/inner.sh        its second half (runs inside the new mount namespace)
#   PREFIX/user-bin-fuse/      `apptainer` and `singularity` for a cluster user: a /dev/fuse users can open
#   PREFIX/user-bin-nofuse/    the same with the host's /dev (here /dev/fuse is 0600: no FUSE for users)
#   PREFIX/VERSION             `apptainer version` of the installed package
# Idempotent: an existing root with apptainer in it is kept (the wrappers are always rewritten).
set -euo pipefail
PREFIX=${1:-/opt/mlops-apptainer}
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 2; }
[[ $PREFIX == /* ]] || { echo "install.sh: PREFIX must be absolute" >&2; exit 2; }
R=$PREFIX/root

in_root() {   # run one command in the root (as root; chroot is enough for apt)
  # shellcheck disable=SC2016 # $R and $@ are the inner shell's
  unshare -m --propagation private sh -c 'R=$1; shift
    mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"; mount --rbind /sys "$R/sys"
    exec chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"' in_root "$R" "$@"
}

if [ ! -x "$R/usr/bin/apptainer" ]; then
  rm -rf "$R.part"
  mkdir -p "$PREFIX"
  # this machine's Debian mirror (deb822 sources, else sources.list)
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
  debootstrap --variant=minbase trixie "$R.part" "$MIRROR" >"$PREFIX/debootstrap.log" 2>&1 ||
    { tail -n 30 "$PREFIX/debootstrap.log" >&2; exit 1; }
  echo "deb $MIRROR sid main" >"$R.part/etc/apt/sources.list.d/sid.list"
  printf 'Package: *\nPin: release a=unstable\nPin-Priority: 100\n' >"$R.part/etc/apt/preferences.d/sid"
  mv "$R.part" "$R"
  # sid's Release file can be expired on a mirror snapshot: do not let that stop the install
  in_root apt-get -qq -o Acquire::Check-Valid-Until=false update
  in_root apt-get -qq -o Acquire::Check-Valid-Until=false install -y --no-install-recommends \
    apptainer/unstable squashfuse fuse-overlayfs fuse2fs e2fsprogs fuse3 squashfs-tools python3-minimal procps \
    >"$PREFIX/apt.log" 2>&1 || { tail -n 30 "$PREFIX/apt.log" >&2; rm -rf "$R"; exit 1; }
  in_root apt-get clean
  rm -rf "$R"/var/lib/apt/lists/*
fi
mkdir -p "$PREFIX/bin" "$PREFIX/lib" "$PREFIX/user-bin-fuse" "$PREFIX/user-bin-nofuse"
install -m 0755 "$HERE/root-wrapper.sh" "$PREFIX/bin/mlops-apptainer-root"
install -m 0755 "$HERE/inner.sh" "$PREFIX/lib/inner.sh"
for mode in fuse nofuse; do
  for name in apptainer singularity; do
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@DEV@|$mode|g" -e "s|@NAME@|$name|g" "$HERE/user-shim.sh" \
      >"$PREFIX/user-bin-$mode/$name"
    chmod 0755 "$PREFIX/user-bin-$mode/$name"
  done
done
# From /: the wrapper cds into the caller's directory inside the root, where only /tmp /var/tmp
# /home /work are bound, and CI runs this from a clone elsewhere (/check/work/main).
(cd / && "$PREFIX/bin/mlops-apptainer-root" fuse apptainer version) >"$PREFIX/VERSION"
echo "apptainer $(cat "$PREFIX/VERSION") in $PREFIX"
