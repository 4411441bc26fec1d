#!/bin/bash
# The state of a run (or the list of runs) for mlops.cluster.reader, with bash, coreutils, find, tar
# and gzip only: no Python on the login node (RHEL 8's python3 is 3.6, CentOS 7's 3.6 or none).
# Sent on stdin: bash -s -- MODE TARGET NONCE MAX_BYTES < read_state.sh
#   run RUN_DIR    "NONCE exists=0" when there is no such directory, else "NONCE exists=1 alive=A pids=P"
#                  (A: - no runner pid file, 1 a recorded runner pid is a live process, 0 none is;
#                  P: ok, or bad when a pid file does not hold a number), a newline, then ONE tar.gz
#                  stream of the small state files (at most MAX_BYTES compressed bytes)
#   list RUNS_DIR  "NONCE runs", then one "NAME COLLECTED" line per run directory (COLLECTED is 1 when
#                  it has state/collected.json)
# The NONCE (letters and digits, chosen by the runner for this command) marks where the answer starts:
# whatever a login shell printed before it is not the answer. Everything sent is untrusted on the
# runner (mlops.cluster.records validates it): tar archives a link as a link (never its target) and
# the runner takes regular files only; find selects regular files below a size each.
set -u
export LC_ALL=C
MODE=${1:-}
TARGET=${2:-}
NONCE=${3:-}
MAX_BYTES=${4:-}
case "$NONCE" in '' | *[!A-Za-z0-9]*) echo "read_state.sh: bad nonce" >&2; exit 2 ;; esac
case "$MAX_BYTES" in '' | *[!0-9]*) echo "read_state.sh: bad byte cap" >&2; exit 2 ;; esac

if [ "$MODE" = list ]; then
  printf '%s runs\n' "$NONCE"
  [ -d "$TARGET" ] || exit 0
  for dir in "$TARGET"/*/; do
    dir=${dir%/}
    name=${dir##*/}
    # a run id (mlops.runid.PATTERN); other names and links are not runs of ours
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$ ]] || continue
    [ -L "$dir" ] && continue
    collected=0
    [ -f "$dir/state/collected.json" ] && collected=1
    printf '%s %s\n' "$name" "$collected"
  done
  exit 0
fi
[ "$MODE" = run ] || { echo "read_state.sh: unknown mode" >&2; exit 2; }

if [ -L "$TARGET" ] || ! cd "$TARGET" 2> /dev/null; then
  printf '%s exists=0\n' "$NONCE"
  exit 0
fi
# scheduler = none: the runner's process group leader is recorded in state/runner-N.pid
alive=-
pids=ok
for file in state/runner-*.pid; do
  [ -f "$file" ] || continue
  pid=$(head -c 24 "$file")
  case "$pid" in '' | *[!0-9]*) pids=bad; continue ;; esac
  [ "$alive" = 1 ] || alive=0
  if kill -0 "$pid" 2> /dev/null || [ -d "/proc/$pid" ]; then alive=1; fi
done
printf '%s exists=1 alive=%s pids=%s\n' "$NONCE" "$alive" "$pids"
# The small files first (a flood of task records cannot push them past the cap), task records last.
{
  find run.json state/jobs.json state/notify.json state/collected.json state/params.rc state/data.rc \
    envs/ids.txt -maxdepth 0 -type f -size -4096k -print0
  find state/jobs -maxdepth 1 -type f -name 'submitted-*.txt' -size -1024k -print0
  find state/tasks -maxdepth 1 -type f -name '*.json' -size -64k -print0
} 2> /dev/null | tar -c -f - --null --no-recursion --ignore-failed-read -T - 2> /dev/null | gzip -c | head -c "$MAX_BYTES"
exit 0
