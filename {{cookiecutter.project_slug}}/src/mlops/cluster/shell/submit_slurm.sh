#!/bin/bash
# Submit one attempt of a run: submit_slurm.sh JOBS_DIR ATTEMPT WITH_STAGES CHUNKS NOTIFY NAME_PREFIX
#   WITH_STAGES 1: params.sbatch, then data.sbatch (afterok), then the model arrays (afterok data)
#   CHUNKS:        model-ATTEMPT-0.sbatch .. model-ATTEMPT-(CHUNKS-1).sbatch, one after another
#                  (afterany), so that the array throttle %K bounds the whole sweep
#   NOTIFY 1:      notify.sbatch, afterany on every model array (it also runs after a failure)
#   NAME_PREFIX:   the jobs of this attempt are named NAME_PREFIX-{params,data,model,notify}
#                  (mlops.cluster.sbatch.job_name)
# Every job id is appended to submitted-ATTEMPT.txt as soon as sbatch returns it ("NAME ID"), so a
# submission cut in the middle leaves a record of what to cancel. stdout: the same "NAME ID" lines.
# A job sbatch created is always recorded or cancelled. The id is the last line of `sbatch --parsable`
# that is "ID" or "ID;CLUSTER" (a site's job_submit plugin may print "sbatch: INFO: ..." lines first).
# When sbatch fails, or answers with no id although it may have created a job, every job of this
# attempt is cancelled by id and by name. Exit codes:
#   0  submitted ("done" is the last line of submitted-ATTEMPT.txt)
#   1  refused, and no job of this attempt is left in the queue: submitting again is safe
#   3  refused, and squeue still lists jobs of this attempt (or could not be asked): stderr says which
# bash >= 4.2 (CentOS 7): no negative array index, and an empty array is expanded as ${A[@]+"${A[@]}"}
set -u
JOBS=$1
ATTEMPT=$2
WITH_STAGES=$3
CHUNKS=$4
NOTIFY=$5
PREFIX=$6
PROGRESS="$JOBS/submitted-$ATTEMPT.txt"
: > "$PROGRESS"
ALL=()
HERE=$(dirname "$0")
# fail WHAT: cancel every job of this attempt (the recorded ids, and by name the ones whose id was
# lost); cancel_slurm.sh asks squeue whether any is left.
fail() {
  echo "sbatch failed for $1" >&2
  if bash "$HERE/cancel_slurm.sh" "$PREFIX" ${ALL[@]+"${ALL[@]}"} > /dev/null; then exit 1; fi
  exit 3
}
# submit NAME SBATCH_ARGS...: the job id into $ID
submit() {
  local name=$1 out rc
  shift
  out=$(sbatch --parsable "$@")
  rc=$?
  ID=$(printf '%s\n' "$out" | sed -n 's/^[[:space:]]*\([0-9][0-9]*\)\(;[A-Za-z0-9_.-]*\)\{0,1\}[[:space:]]*$/\1/p' | tail -n 1)
  if [ -n "$ID" ]; then
    ALL+=("$ID")
    echo "$name $ID" >> "$PROGRESS"
  fi
  if [ "$rc" -ne 0 ]; then fail "$name"; fi
  if [ -z "$ID" ]; then fail "$name (its answer had no job id: $(printf '%s' "$out" | tr -c '[:print:]' ' ' | cut -c1-200))"; fi
  echo "$name $ID"
}
AFTER=()
if [ "$WITH_STAGES" = 1 ]; then
  submit params "$JOBS/params.sbatch"
  submit data --dependency="afterok:$ID" "$JOBS/data.sbatch"
  AFTER=("afterok:$ID")
fi
MODEL=()
for ((n = 0; n < CHUNKS; n++)); do
  DEP=(${AFTER[@]+"${AFTER[@]}"})
  if [ "${#MODEL[@]}" -gt 0 ]; then DEP+=("afterany:${MODEL[${#MODEL[@]} - 1]}"); fi
  ARGS=()
  if [ "${#DEP[@]}" -gt 0 ]; then ARGS=("--dependency=$(IFS=,; echo "${DEP[*]}")"); fi
  submit "model" ${ARGS[@]+"${ARGS[@]}"} "$JOBS/model-$ATTEMPT-$n.sbatch"
  MODEL+=("$ID")
done
if [ "$NOTIFY" = 1 ]; then
  submit notify --dependency="afterany:$(IFS=:; echo "${MODEL[*]}")" "$JOBS/notify-$ATTEMPT.sbatch"
fi
echo "done" >> "$PROGRESS"
