"""The CI/CD variables of the project: their manifest, their values for one cluster, the upload to
GitLab and the local file for gitlab-ci-local. The names, kinds, flags and scopes are mlops.civars.

manifest.py   `.gitlab/ci-variables.yml`: every variable once per cluster (scope hpc/<name>) or shared
              (scope hpc/*), names and flags, never values
plan.py       the values for ONE cluster from this machine (environment or a hidden prompt), checked;
              what is left out and why (typed codes, W&B offline without a key, an unset optional one)
upload.py     `mlops variables upload --cluster NAME`: the plan set on the GitLab project (python-gitlab)
localfile.py  `mlops variables local --cluster NAME`: the plan merged into the 0600 gitlab-ci-local file

A value of cluster A is only ever written under A's scope (or hpc/* for a shared one): each command
handles one cluster, and what it writes for that cluster comes from this run's environment alone.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = Path(".gitlab") / "ci-variables.yml"
LOCAL_FILE = Path(".gitlab-ci-local-variables.yml")  # gitignored; holds secrets, mode 0600
