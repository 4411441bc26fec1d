#!/usr/bin/env bash
# THE test command (README quotes it, .ci/run calls it). Runs the tiers in order, each in its own
# pytest process over its own folder (tests/<tier>/, tests/support/tiers.py), so that a failure says
# where it is and each process imports only its tier. All tiers run even if one fails; the exit
# code and the last line sum them up. Extra arguments go to every pytest run (e.g. -x, -k name).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
tiers=(unit render project pipeline infra e2e security update)
# Content-keyed things later tiers reuse (debootstrap base image, one private container store).
if [ -z "${MLOPS_TEST_CACHE:-}" ]; then
  MLOPS_TEST_CACHE=$(mktemp -d /tmp/mlops-test-cache.XXXXXX)
  export MLOPS_TEST_CACHE
  own_cache=$MLOPS_TEST_CACHE   # ours: removed at exit (a cache given by the caller is kept)
fi
reports=$(mktemp -d /tmp/mlops-test-reports.XXXXXX)
trap 'rm -rf "$reports" ${own_cache:+"$own_cache"} 2>/dev/null || true' EXIT
failed=()
for tier in "${tiers[@]}"; do
  echo "=== tier $tier: pytest tests/$tier ==="
  start=$SECONDS
  python3 -m pytest "tests/$tier" --junitxml="$reports/$tier.xml" "$@"
  rc=$?
  echo "=== tier $tier: exit $rc in $((SECONDS - start))s ==="
  # 5 = no test selected (e.g. by -k) in this tier
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then failed+=("$tier"); fi
done
python3 - "$reports" <<'PY'
import sys, pathlib, xml.etree.ElementTree as ET
tot = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.xml")):
    for suite in ET.parse(f).getroot().iter("testsuite"):
        for k in tot:
            tot[k] += int(suite.get(k, 0))
bad = tot["failures"] + tot["errors"]
print(f"total: {tot['tests'] - bad - tot['skipped']} passed, {bad} failed, {tot['skipped']} skipped")
PY
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed tiers: ${failed[*]}"
  exit 1
fi
