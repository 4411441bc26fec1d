#!/usr/bin/env bash
# Render a project with the template's defaults into a temp dir and run its whole sweep locally.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d /tmp/mlops-demo.XXXXXX)}
python3 -m pip install -q -r "$here/requirements-test.txt"
cookiecutter --no-input "$here" -o "$out"
cd "$out/forecasting-experiments"
python3 -m venv --system-site-packages .venv
.venv/bin/pip install -q -e .
.venv/bin/mlops params validate
.venv/bin/mlops run --local --jobs 2
echo "project: $out/forecasting-experiments (results in runs/*/results/summary.csv)"
