#!/bin/bash
# One stage before the sweep: stage.sh RUN_DIR NAME (params or data).
# Runs the container argv of state/jobs/NAME.argv (one word per line; @ENV_FILE@ = state/stage.env,
# @UID@/@GID@ = the user's ids); log to state/NAME.log, exit code to state/NAME.rc.
set -u
RUN=$1
NAME=$2
case "$NAME" in
  params|data) ;;
  *) echo "unknown stage $NAME" >&2; exit 2 ;;
esac
# what the stage's container binds (mlops.images.runtime.binds): made here if missing
case "$NAME" in
  params) [ -d "$RUN/envs" ] || mkdir -m 700 "$RUN/envs" ;;
  data) [ -d "$RUN/data" ] || mkdir -m 700 "$RUN/data" ;;
esac
CMD=()
GID=$(id -g)
while IFS= read -r word; do
  word=${word//@ENV_FILE@/$RUN/state/stage.env}
  word=${word//@UID@/$UID}
  CMD+=("${word//@GID@/$GID}")
done < "$RUN/state/jobs/$NAME.argv"
"${CMD[@]}" > "$RUN/state/$NAME.log" 2>&1
RC=$?
echo "$RC" > "$RUN/state/$NAME.rc"
exit "$RC"
