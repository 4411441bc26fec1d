#!/bin/bash
# One model task: task.sh RUN_DIR ATTEMPT INDEX
#   index -> config id (envs/ids.txt) -> env file -> the model container -> state/tasks/<id>.json
# The container's argv is state/jobs/model-ATTEMPT.argv (one word per line, written by mlops.cluster.submit);
# the word @ENV_FILE@ stands for this task's env file, @CID@ for its config id, @UID@/@GID@ for the
# user's ids. What the params container wrote (envs/) is untrusted: the config id must be 10 hex
# digits, ids.txt and the env file regular files (not links a container planted); results/<id>/ is
# made here, fresh, before the container starts (mlops.images.runtime binds only it and data/).
# Plain bash + sed + awk: no interpreter start per task, which a sweep of short tasks pays many times.
set -u
RUN=$1
ATTEMPT=$2
IDX=$3
regular() { [ -f "$1" ] && [ ! -L "$1" ] && [ "$(stat -c %h -- "$1")" = 1 ]; }
regular "$RUN/envs/ids.txt" || { echo "envs/ids.txt is missing or not a regular file" >&2; exit 3; }
CID=$(sed -n "$((IDX + 1))p" "$RUN/envs/ids.txt")
# never print what was read: the line is untrusted (only the pattern is named)
[[ $CID =~ ^[0-9a-f]{10}$ ]] || { echo "envs/ids.txt line $((IDX + 1)) is not a config id (10 hex digits)" >&2; exit 3; }
ENV_FILE="$RUN/envs/$CID.env"
JOB="${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-local}}_${SLURM_ARRAY_TASK_ID:-$IDX}"
STARTED=$(date +%s.%N)

RESTARTS=${SLURM_RESTART_COUNT:-0}
case "$RESTARTS" in '' | *[!0-9]*) RESTARTS=0 ;; esac

# state STATUS [EXIT_CODE]: the record of mlops.rundir.write_task_state, atomically replaced.
state() {
  local extra="" secs
  if [ -n "${2:-}" ]; then
    secs=$(awk -v a="$STARTED" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
    extra=$(printf ', "duration_s": %s, "exit_code": %d' "$secs" "$2")
  fi
  printf '{"attempt": %d, "config_id": "%s", "job": "%s", "restarts": %d, "started": %s, "status": "%s"%s}' \
    "$ATTEMPT" "$CID" "$JOB" "$RESTARTS" "$STARTED" "$1" "$extra" > "$RUN/state/tasks/$CID.json.tmp"
  mv -f "$RUN/state/tasks/$CID.json.tmp" "$RUN/state/tasks/$CID.json"
}

# SIGTERM: scancel, the time limit, preemption or a requeue (SLURM), or `mlops cancel` (scheduler none).
# SLURM's word decides the state (mlops.cluster.state reads it while SLURM knows the job); the record
# keeps what SLURM said at this moment, for when it has forgotten the job: the reason TimeLimit is a
# timeout, a restart counted beyond this run's SLURM_RESTART_COUNT is a requeue (the task runs again,
# so the record is not final), anything else a cancel. scontrol is bounded (the job has KillWait).
# shellcheck disable=SC2329 # run by the TERM trap below
on_term() {
  local status=cancelled info restarts
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    info=" $(timeout 10 scontrol -o show job "$SLURM_JOB_ID" 2> /dev/null | head -n 1) "
    restarts=$(printf '%s' "$info" | sed -n 's/.* Restarts=\([0-9][0-9]*\) .*/\1/p')
    case "$info" in *" Reason=TimeLimit "*) status=timeout ;; esac
    if [ "${restarts:-0}" -gt "$RESTARTS" ] 2> /dev/null; then status=requeued; fi
  fi
  state "$status" 143
  exit 143
}

CMD=()
GID=$(id -g)
while IFS= read -r word; do
  word=${word//@ENV_FILE@/$ENV_FILE}
  word=${word//@CID@/$CID}
  word=${word//@UID@/$UID}
  CMD+=("${word//@GID@/$GID}")
done < "$RUN/state/jobs/model-$ATTEMPT.argv"

# results/<id>/ as the host made it: an earlier attempt's container may have left links in it
rm -rf -- "$RUN/results/$CID"
[ -d "$RUN/results" ] || mkdir -m 700 "$RUN/results"
mkdir -m 700 "$RUN/results/$CID" || exit 3
if ! regular "$ENV_FILE"; then
  echo "envs/$CID.env is missing or not a regular file (a link is refused)" > "$RUN/results/$CID/log"
  state failed 3
  exit 3
fi
trap 'on_term' TERM  # before the running record: a TERM right after it must still be recorded
state running
"${CMD[@]}" > "$RUN/results/$CID/log" 2>&1 &
wait $!
RC=$?
if [ "$RC" -eq 0 ] && [ -f "$RUN/results/$CID/metrics.json" ]; then state completed 0; else state failed "$RC"; fi
exit "$RC"
