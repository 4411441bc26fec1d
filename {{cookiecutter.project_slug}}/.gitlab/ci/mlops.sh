#!/bin/bash -p
# Started by job.sh (/bin/bash -p, from an environment that holds only CI_*, GITLAB_USER_LOGIN, HPC_*,
# MLOPS_* and WANDB_API_KEY). PATH is fixed here, Python by its absolute path: no variable of the job
# steers which Python, which packages or which code runs.
#   mlops.sh tool INDEX_URL TOOL_DIR   the `tool` job: download the wheels of every lock in
#       .gitlab/ci/lock/ from INDEX_URL into .mlops-tool/wheels/, each checked against the lock's sha256
#       (pip --require-hashes: any index, mirror or proxy can only refuse, never change what installs)
#   mlops.sh NEED ARGS...              every other job: a venv from .mlops-tool/wheels/ (the tool job's
#       artifact) installed again with --require-hashes from lock/NEED.txt, then
#       `python -I -m mlops.jobenv ARGS` (jobenv keeps the variables mlops/civars.py names, checks the
#       CI_* ones as data and runs the mlops command)
set -euo pipefail
umask 077
readonly PATH=/usr/local/bin:/usr/bin:/bin
export PATH LANG=C.UTF-8 LC_ALL=C.UTF-8
tool=$PWD/.mlops-tool
locks=$PWD/.gitlab/ci/lock

python=
for candidate in /usr/local/bin/python3 /usr/bin/python3; do  # the job image's (python:3.11-slim: the first)
  if [ -x "$candidate" ]; then python=$candidate && break; fi
done
[ -n "$python" ] || { echo "mlops.sh: no python3 in /usr/local/bin or /usr/bin of the job image" >&2; exit 1; }

# pip from the job image, isolated: no PIP_* variable, no pip.conf, wheels only, every file hashed.
pip() { "$python" -I -m pip --isolated --disable-pip-version-check --no-input "$@"; }

if [ "${1:-}" = tool ]; then
  index=$2 tool_dir=$3
  mkdir -p "$tool/wheels"
  for lock in "$locks"/*.txt; do
    pip download --quiet --require-hashes --only-binary :all: --no-deps \
      --index-url "$index" --dest "$tool/wheels" --requirement "$lock"
  done
  # where the project's own package is (src/ of TOOL_DIR): pure Python, put on the path, never built
  printf '%s\n' "$tool_dir" >"$tool/tool-dir"
  exit 0
fi

need=${1:?NEED (a lock in .gitlab/ci/lock/) and the mlops arguments}
shift
case $need in */* | .*) echo "mlops.sh: bad lock name $need" >&2 && exit 2 ;; esac
[ -f "$locks/$need.txt" ] || { echo "mlops.sh: no lock $locks/$need.txt" >&2 && exit 2; }
[ -d "$tool/wheels" ] && [ -f "$tool/tool-dir" ] || {
  echo "mlops.sh: .mlops-tool/ (the tool job's artifact) is missing: does this job need the tool job?" >&2
  exit 1
}
IFS= read -r tool_dir <"$tool/tool-dir"
case $tool_dir in /* | *..*) echo "mlops.sh: bad tool dir $tool_dir" >&2 && exit 2 ;; esac
src=$PWD/$tool_dir/src
[ -f "$src/mlops/jobenv.py" ] || { echo "mlops.sh: $src/mlops/jobenv.py not found (tool_dir input)" >&2 && exit 2; }

# A fresh venv per job (~0.1 s) outside the checkout, the locked wheels installed into it again with
# their hashes checked (the artifact is re-verified, not trusted), the project's src/ on its path.
work=$(mktemp -d /tmp/mlops-job.XXXXXXXX)
trap 'rm -rf "$work"' EXIT
"$python" -I -m venv --without-pip "$work/venv"
site=("$work"/venv/lib/python3*/site-packages)
# --no-compile: no .pyc written up front (halves the collect set's 12 s; Python compiles what it imports)
pip install --quiet --no-index --find-links "$tool/wheels" --require-hashes --only-binary :all: --no-deps \
  --no-compile --root-user-action=ignore --target "${site[0]}" --requirement "$locks/$need.txt"
printf '%s\n' "$src" >"${site[0]}/mlops-src.pth"
mkdir "$work/home"
HOME=$work/home "$work/venv/bin/python" -I -m mlops.jobenv "$@"
