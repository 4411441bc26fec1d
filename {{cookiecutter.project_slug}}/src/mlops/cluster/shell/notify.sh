#!/bin/bash
# Tell GitLab that a run is final: notify.sh RUN_DIR ENDPOINT REF RUN_ID TIMEOUT_S
# POSTs to GitLab's pipeline trigger API (ENDPOINT = <api>/projects/<id>/trigger/pipeline) with the
# form fields token, ref, variables[MLOPS_RUN_ID] and variables[MLOPS_TRIGGER]=collect.
# The token is read from the 0600 file state/trigger-token by curl itself (--data-urlencode
# token@FILE), so it is never on a command line and never in this script or a batch script.
# One attempt, bounded by TIMEOUT_S (no retry storm); the outcome goes to state/notify.json:
#   {"status": "sent"|"failed"|"skipped", "http_status": N, "error": "...", "at": epoch seconds}
# curl is used when present, else python3; a node with neither records "skipped".
set -u
RUN=$1
ENDPOINT=$2
REF=$3
RUN_ID=$4
TIMEOUT=$5
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
    --data-urlencode "token@$TOKEN" --data-urlencode "ref=$REF" \
    --data-urlencode "variables[MLOPS_RUN_ID]=$RUN_ID" --data-urlencode "variables[MLOPS_TRIGGER]=collect" \
    "$ENDPOINT" 2> "$ERR")
  RC=$?
  MSG=$(head -c 300 "$ERR")
  rm -f "$ERR"
  case "$CODE" in ''|*[!0-9]*) CODE=0 ;; esac
  if [ "$RC" -ne 0 ]; then
    record failed "$CODE" "curl exit $RC: $MSG"
  elif [ "$CODE" -ge 200 ] && [ "$CODE" -lt 300 ]; then
    record sent "$CODE" ""
  else
    record failed "$CODE" "GitLab answered HTTP $CODE (a missing, wrong or revoked trigger token gives 401 or 404)"
  fi
elif command -v python3 > /dev/null; then
  OUT=$(python3 - "$TOKEN" "$ENDPOINT" "$REF" "$RUN_ID" "$TIMEOUT" 2>&1 << 'PY'
import sys, urllib.error, urllib.parse, urllib.request
token_file, endpoint, ref, run_id, timeout = sys.argv[1:]
with open(token_file) as fh:
    token = fh.read()
body = urllib.parse.urlencode({"token": token, "ref": ref, "variables[MLOPS_RUN_ID]": run_id,
                               "variables[MLOPS_TRIGGER]": "collect"}).encode()
try:
    with urllib.request.urlopen(endpoint, data=body, timeout=float(timeout)) as answer:
        print(answer.status, "")
except urllib.error.HTTPError as exc:
    print(exc.code, "")
except Exception as exc:
    print(0, type(exc).__name__)
PY
)
  CODE=${OUT%% *}
  case "$CODE" in ''|*[!0-9]*) CODE=0 ;; esac
  if [ "$CODE" -ge 200 ] && [ "$CODE" -lt 300 ]; then
    record sent "$CODE" ""
  elif [ "$CODE" -eq 0 ]; then
    record failed 0 "python3: ${OUT#* }"
  else
    record failed "$CODE" "GitLab answered HTTP $CODE (a missing, wrong or revoked trigger token gives 401 or 404)"
  fi
else
  record skipped 0 "neither curl nor python3 on this node"
fi
exit 0
