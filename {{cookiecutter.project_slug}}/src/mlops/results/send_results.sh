#!/bin/bash
# The cluster side of `mlops collect` (mlops/results/fetch.py): write the results of one run directory
# to stdout as one tar.gz stream. Usage: bash -s -- RUN_DIR MAX_FILE_BYTES < send_results.sh
# The env files stay on the cluster (they are the inputs); so do batch scripts, temp files and the run's
# GitLab trigger token (state/trigger-token, mlops.cluster.notify: a secret, never an artifact).
# Regular files larger than MAX_FILE_BYTES are not sent: each goes to stderr as
# 'MLOPS-TOO-LARGE <bytes> <name>' + NUL, so that a 100 GB checkpoint costs nothing and is reported as skipped. Links, FIFOs and devices
# are sent as what they are (tar never follows them) and refused by the reading side; hard links are
# sent as the files they are (--hard-dereference), so a linked metrics.json is not lost.
set -u
run_dir=$1
max_file_bytes=$2
cd "$run_dir" || exit 3
names=()
for name in run.json envs/index.json state results data/meta.json; do
  if [ -e "$name" ] || [ -L "$name" ]; then names+=("$name"); fi
done
if [ ${#names[@]} -eq 0 ]; then exit 4; fi
find "${names[@]}" \( -name '*.tmp' -o -name '*.sbatch' -o -name '*.sh' -o -name stage.env -o -name trigger-token \) -prune \
  -o \( -type f -size +"${max_file_bytes}"c -fprintf /dev/stderr 'MLOPS-TOO-LARGE %s %p\0' \) \
  -o -print0 |
  tar -czf - --null --no-recursion --hard-dereference --ignore-failed-read -T -
