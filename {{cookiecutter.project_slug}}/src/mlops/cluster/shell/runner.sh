#!/bin/bash
# scheduler = none: runner.sh RUN_DIR ATTEMPT PARALLEL WITH_STAGES
# params, data (when WITH_STAGES is 1), then the model tasks of state/jobs/indices-ATTEMPT.txt,
# PARALLEL at a time (xargs -P), then the notification (notify.sh, when the run has one).
# Started with setsid by mlops.cluster.host; its pid is state/runner-ATTEMPT.pid.
set -u
RUN=$1
ATTEMPT=$2
PARALLEL=$3
WITH_STAGES=$4
HERE=$(dirname "$0")
echo "$$" > "$RUN/state/runner-$ATTEMPT.pid"
sweep() {
  if [ "$WITH_STAGES" = 1 ]; then
    bash "$HERE/stage.sh" "$RUN" params || return 1
    bash "$HERE/stage.sh" "$RUN" data || return 1
  fi
  xargs -P "$PARALLEL" -n 1 bash "$HERE/task.sh" "$RUN" "$ATTEMPT" < "$RUN/state/jobs/indices-$ATTEMPT.txt"
  return 0
}
sweep
if [ -f "$RUN/state/jobs/notify.args" ]; then
  mapfile -t NOTIFY < "$RUN/state/jobs/notify.args"
  bash "$HERE/notify.sh" "$RUN" "${NOTIFY[@]}"
fi
exit 0
