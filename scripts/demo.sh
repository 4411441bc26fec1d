#!/usr/bin/env bash
# The demo: render a project with the template's default answers into a new folder and run its whole
# sweep on this machine, as the rendered README's first hour does. Needs python3 (3.11+) with venv
# and pip; no GitLab, cluster or W&B account. Prints one line per step, the sweep's progress and its
# end table; what the tools say (pip, cookiecutter, the hooks' notes) goes to <folder>/demo.log.
#   bash scripts/demo.sh [FOLDER]        (default: a new /tmp/mlops-demo.XXXXXX)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d /tmp/mlops-demo.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log=$out/demo.log
venv=$out/venv
project=$out/forecasting-experiments

quietly() {
    if ! "$@" >>"$log" 2>&1; then
        echo "failed: $* (the end of $log follows)" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
}

echo "1/4 a venv with cookiecutter: $venv"
quietly python3 -m venv "$venv"
quietly "$venv/bin/pip" install cookiecutter tomlkit
echo "2/4 render the template with its default answers: $project"
quietly "$venv/bin/cookiecutter" --no-input "$here" -o "$out"
echo "3/4 install mlops and the model's packages (a minute or two the first time)"
quietly "$venv/bin/pip" install -e "${project}[report]" -r "$project/model/requirements.txt"
echo "4/4 the sweep: mlops run --local --jobs 2"
cd "$project"
rc=0
"$venv/bin/mlops" run --local --jobs 2 || rc=$?
echo
echo "project: $project (next steps: its README.md; what the tools said: $log)"
exit "$rc"
