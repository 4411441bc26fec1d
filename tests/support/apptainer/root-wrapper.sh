#!/bin/bash
# Root wrapper of the tests' Apptainer (install.sh puts it at PREFIX/bin/; README.md here):
#   mlops-apptainer-root fuse|nofuse apptainer|singularity ARGS...
# Enters the Debian trixie root that holds Apptainer (a private mount namespace + pivot_root; root
# is needed only for that), then drops to the CALLING user (SUDO_UID/SUDO_GID, set by sudo, which
# is how a cluster user's shim calls this) and execs apptainer ARGS as that user: unprivileged
# Apptainer, as on a cluster without setuid. Called by root without sudo it stays root.
#   fuse    a private /dev with /dev/fuse 0666 (a node where users can open it)
#   nofuse  the host's /dev (here /dev/fuse is 0600: users cannot open it)
set -euo pipefail
case ${1:-} in fuse | nofuse) ;; *) echo "usage: mlops-apptainer-root fuse|nofuse apptainer|singularity ARGS..." >&2; exit 2 ;; esac
case ${2:-} in apptainer | singularity) ;; *) echo "mlops-apptainer-root: unknown program ${2:-}" >&2; exit 2 ;; esac
prefix=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
dev=$1 name=$2
shift 2
exec unshare -m --propagation private -- "$prefix/lib/inner.sh" "$prefix/root" "$dev" \
  "${SUDO_UID:-0}" "${SUDO_GID:-0}" "$(pwd)" "$name" "$@"
