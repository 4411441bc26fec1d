#!/bin/bash
# Cancel the jobs of one attempt of a run and say which SLURM still lists: cancel_slurm.sh PREFIX [JOB_ID...]
# The ids given (a progress file's), and by name every job of the attempt (PREFIX-params, -data, -model,
# -notify: mlops.cluster.sbatch.job_name), so that a job sbatch created but whose id never came back is
# cancelled too. Then squeue decides (SLURM's word, not scancel's exit code): exit 0 when no job of
# the attempt is pending, running, suspended or configuring; else exit 3 with the ids left on stdout,
# one per line (or none when squeue could not be asked). Run by submit_slurm.sh, or sent on stdin
# by mlops.cluster.submit (`bash -s -- PREFIX IDS...`).
set -u
PREFIX=$1
shift
ME=$(id -un)
NAMES="$PREFIX-params,$PREFIX-data,$PREFIX-model,$PREFIX-notify"
if [ "$#" -gt 0 ]; then scancel "$@" 2> /dev/null; fi
for job in params data model notify; do
  scancel --user="$ME" --name="$PREFIX-$job" 2> /dev/null
done
if ! left=$(squeue --noheader --user="$ME" --states=PD,R,S,CF --format=%i --name="$NAMES"); then
  echo "squeue failed: cannot tell whether jobs named $PREFIX-* are still queued" >&2
  exit 3
fi
found=0
for id in $left; do
  case "$id" in '' | *[!0-9_]*) continue ;; esac
  echo "$id"
  found=1
done
if [ "$found" = 1 ]; then
  echo "jobs named $PREFIX-* are still queued after scancel" >&2
  exit 3
fi
exit 0
