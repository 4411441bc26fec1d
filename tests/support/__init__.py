"""Helpers shared by the tiers of the template's tests (no test module imports another).

render.py           render projects, the option matrix, make_venv
tiers.py            the tier folders and the marker each folder's conftest sets
infra/              real local services: sshd+TOTP, SLURM, rootless podman, registry, base image
pipeline.py         gitlab-ci-local runs of a rendered project
hostile_results.py  a run directory written as a hostile cluster would write it
local_run.py        `mlops run --local` in copies of a rendered project
first_hour.py       the rendered README's first-hour commands, run as written and timed
"""
