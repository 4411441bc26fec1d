#!/bin/bash
# Tell GitLab that a run is final: notify.sh RUN_DIR ENDPOINT REF TIMEOUT_S
# POSTs to GitLab's pipeline trigger API (ENDPOINT = https://<gitlab_host>/api/v4/projects/<id>/trigger/pipeline,
# built by mlops.cluster.notify at submit) the form fields `token` and `ref`, nothing else: the
# pipeline it starts collects every final run of each cluster from the cluster's own state
# (`mlops collect --all-final`), so no variable travels with the notification.
# The token is read from the 0600 file state/trigger-token by curl itself (--data-urlencode
# token@FILE), so it is never on a command line and never in this script or a batch script.
# One attempt, bounded by TIMEOUT_S (no retry storm); the outcome goes to state/notify.json:
#   {"status": "sent"|"failed"|"skipped", "http_status": N, "error": "...", "at": epoch seconds}
# curl is used when present, else python3 (>= 3.6: notify_post.py next to this file); a node with
# neither records "skipped".
set -u
RUN=$1
ENDPOINT=$2
REF=$3
TIMEOUT=$4
HERE=$(dirname "$0")
TOKEN="$RUN/state/trigger-token"
# record STATUS HTTP_STATUS ERROR: the error text is cut to safe characters (it is JSON in a file)
record() {
  local error
  error=$(printf '%s' "$3" | tr -c 'A-Za-z0-9 .,:;()/_=-' ' ' | cut -c1-300)
  printf '{"status": "%s", "http_status": %d, "error": "%s", "at": %s}\n' "$1" "$2" "$error" "$(date +%s)" \
    > "$RUN/state/notify.json.tmp"
  mv -f "$RUN/state/notify.json.tmp" "$RUN/state/notify.json"
}
if [ ! -s "$TOKEN" ]; then
  record skipped 0 "no trigger token in the run directory (MLOPS_TRIGGER_TOKEN not set at submit, or already collected)"
  exit 0
fi
if command -v curl > /dev/null; then
  ERR=$(mktemp)
  CODE=$(curl --silent --show-error --output /dev/null --write-out '%{http_code}' \
    --connect-timeout "$TIMEOUT" --max-time "$TIMEOUT" \
    --data-urlencode "token@$TOKEN" --data-urlencode "ref=$REF" "$ENDPOINT" 2> "$ERR")
  RC=$?
  MSG=$(head -c 300 "$ERR")
  rm -f "$ERR"
  if [ "$RC" -ne 0 ]; then CODE=0; MSG="curl exit $RC: $MSG"; fi
elif command -v python3 > /dev/null; then
  OUT=$(python3 "$HERE/notify_post.py" "$TOKEN" "$ENDPOINT" "$REF" "$TIMEOUT" 2>&1 | tail -n 1)
  CODE=${OUT%% *}
  MSG="python3: ${OUT#* }"
else
  record skipped 0 "neither curl nor python3 on this node"
  exit 0
fi
case "$CODE" in '' | *[!0-9]*) CODE=0 ;; esac
if [ "$CODE" -ge 200 ] && [ "$CODE" -lt 300 ]; then
  record sent "$CODE" ""
elif [ "$CODE" -eq 0 ]; then
  record failed 0 "$MSG"
else
  record failed "$CODE" "GitLab answered HTTP $CODE (a missing, wrong or revoked trigger token gives 401 or 404)"
fi
exit 0
