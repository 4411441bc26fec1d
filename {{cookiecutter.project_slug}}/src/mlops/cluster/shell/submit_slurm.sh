#!/bin/bash
# Submit one attempt of a run: submit_slurm.sh JOBS_DIR ATTEMPT WITH_STAGES CHUNKS NOTIFY
#   WITH_STAGES 1: params.sbatch, then data.sbatch (afterok), then the model arrays (afterok data)
#   CHUNKS:        model-ATTEMPT-0.sbatch .. model-ATTEMPT-(CHUNKS-1).sbatch, one after another
#                  (afterany), so that the array throttle %K bounds the whole sweep
#   NOTIFY 1:      notify.sbatch, afterany on every model array (it also runs after a failure)
# Every job id is appended to submitted-ATTEMPT.txt as soon as sbatch returns it ("NAME ID"), so a
# submission cut in the middle leaves a record of what to cancel. On a refusal the jobs of this
# attempt are cancelled and the exit code is 1. stdout: the same "NAME ID" lines.
set -u
JOBS=$1
ATTEMPT=$2
WITH_STAGES=$3
CHUNKS=$4
NOTIFY=$5
PROGRESS="$JOBS/submitted-$ATTEMPT.txt"
: > "$PROGRESS"
ALL=()
fail() {
  echo "sbatch failed for $1" >&2
  if [ "${#ALL[@]}" -gt 0 ]; then scancel "${ALL[@]}"; fi
  exit 1
}
# submit NAME SBATCH_ARGS...: the job id (the cluster part of "id;cluster" dropped) into $ID
submit() {
  local name=$1 out
  shift
  out=$(sbatch --parsable "$@") || fail "$name"
  ID=${out%%;*}
  case "$ID" in
    ''|*[!0-9]*) fail "$name (answer was not a job id)" ;;
  esac
  ALL+=("$ID")
  echo "$name $ID" >> "$PROGRESS"
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
  DEP=("${AFTER[@]}")
  if [ "${#MODEL[@]}" -gt 0 ]; then DEP+=("afterany:${MODEL[-1]}"); fi
  ARGS=()
  if [ "${#DEP[@]}" -gt 0 ]; then ARGS=("--dependency=$(IFS=,; echo "${DEP[*]}")"); fi
  submit "model" "${ARGS[@]}" "$JOBS/model-$ATTEMPT-$n.sbatch"
  MODEL+=("$ID")
done
if [ "$NOTIFY" = 1 ]; then
  submit notify --dependency="afterany:$(IFS=:; echo "${MODEL[*]}")" "$JOBS/notify-$ATTEMPT.sbatch"
fi
echo "done" >> "$PROGRESS"
