"""The sweep on the cluster: submit, state, cancel, notify, and which runs to collect.

slurm.py    SLURM's words: job states, sbatch/sacct/scontrol output, array specs (pure text)
sbatch.py   the batch scripts of an attempt, built from Settings only (#SBATCH lines + one command)
host.py     scheduler = none: the runner on the login host
reader.py   what the cluster says: the run's state files (one bash command, no Python there) and
            SLURM's view (sacct, else scontrol)
records.py  those files checked field by field (untrusted data in, clean data out)
state.py    a run's state: the records merged with SLURM's word; final or not
prepare.py  what a submission writes into the run directory before anything starts
submit.py   `mlops submit` / `cancel`: one attempt at a time, recorded so that a retry is safe
notify.py   the trigger that starts the collect pipeline when a run is final (GitLab trigger API)
runs.py     which runs to collect (one, or every final one not yet collected) and the marker
shell/      what the cluster runs (bash: task, stage, runner, submission, cancel, notification, the
            state reader; notify_post.py for python3 >= 3.6 where there is no curl); loaded with
            importlib.resources and sent over the session
"""
