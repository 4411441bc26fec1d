"""Results of a run: everything that comes back from the cluster (or a local run) is untrusted data.

Student code wrote it, on a shared machine. This package is the trust boundary between that data
and the machine that reads it (a GitLab runner holding the cluster's SSH key and one-time-code
secret, or a laptop):

    fetch.py      the cluster side: one capped tar.gz stream of the run's results
    extract.py    the stream read member by member: only regular files and directories are created,
                  below one directory, through directory file descriptors; the rest is skipped and listed
    read.py       everything read back is validated (ids, index, task records, jobs, metrics, logs)
    text.py       untrusted text made safe for each output (XML, CSV, GitLab metrics, the job log)
    reports.py    junit.xml, metrics.txt, summary.csv, summary.json
    plot.py       sweep.png
    table.py      the short table at the end of the log
    wandb_sync.py `wandb sync` with an allow-listed environment, counted only when verified
    collect.py    `mlops collect`: the above in order
    caps.py       the size caps (mlops.toml [collect])
"""
