#!/bin/bash
# Regenerate the hash-locked tool requirements the CI jobs install (.gitlab/ci/lock/*.txt) from
# pyproject.toml's extras, one file per need: click.txt (deploy, status, cancel: log in over SSH) and
# collect.txt (+ the plot and wandb). Every pinned version with the sha256 of each of its wheels, so
# `pip install --require-hashes --only-binary :all:` installs exactly these files from any index.
# Needs uv (pip install uv); run it from anywhere after changing the extras:  bash .gitlab/ci/lock.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
uv=${UV:-uv}

lock() {  # lock NAME EXTRA...: .gitlab/ci/lock/NAME.txt from the project's dependencies + the extras
  local name=$1 extra args=()
  shift
  for extra in "$@"; do args+=(--extra "$extra"); done
  "$uv" pip compile pyproject.toml "${args[@]}" \
    --universal --python-version 3.11 --only-binary :all: --generate-hashes \
    --custom-compile-command "bash .gitlab/ci/lock.sh" --quiet \
    --output-file ".gitlab/ci/lock/$name.txt"
}

lock click ssh
lock collect ssh report wandb
