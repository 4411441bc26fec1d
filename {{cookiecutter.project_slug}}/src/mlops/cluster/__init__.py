"""The sweep on the cluster: submit, state, cancel, notify, and which runs to collect.

slurm.py    SLURM's words: job states, sacct/scontrol parsing, array chunks, #SBATCH lines
host.py     scheduler = none: the runner on the login host
state.py    what a run looks like on the cluster (read as untrusted data) merged with the scheduler
submit.py   `mlops submit` / `cancel`: one attempt at a time, recorded so that a retry is safe
notify.py   the trigger that starts the collect pipeline when a run is final (GitLab trigger API)
runs.py     which runs to collect (one, or every final one not yet collected) and the marker
shell/      the bash the cluster runs (task, stage, runner, submission, notification) and the
            state reader; loaded with importlib.resources and sent over the session
"""
