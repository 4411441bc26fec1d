"""Results of a run: everything that comes back from the cluster (or a local run) is untrusted data.

Student code wrote it, on a shared machine. This package is the trust boundary between that data
and the machine that reads it (a GitLab runner holding the cluster's SSH key and one-time-code
secret, or a laptop):

    fetch.py      the cluster side: one capped tar.gz stream of the run's results
    extract.py    the stream read member by member: only regular files and directories are created,
                  below one directory, through directory file descriptors; the rest is skipped and listed
    tarheaders.py extended tar headers refused over their cap before tarfile reads them
    outdir.py     where collect writes on this machine: no link followed, a full disk named as local
    reader.py     read-only access below a run directory (never through a link, capped)
    read.py       everything read back is validated (ids, index, task records, jobs, metrics, logs)
    text.py       untrusted text made safe for each output (XML, CSV, GitLab metrics, the job log)
    reports.py    junit.xml, metrics.txt, summary.csv, summary.json
    ranking.py    the primary metric, the best configurations, varying and fixed parameters
    plot.py       sweep.png: the metric against each varying parameter
    table.py      the short table at the end of the log
    wandb_sync.py `wandb sync` with an allow-listed environment, counted only when verified
    collect.py    `mlops collect`: the above in order, into OUT/<cluster>/<run-id>/
    history.py    the runs on this machine (runs/<id>, results/<cluster>/<id>)
    compare.py    `mlops runs`, `mlops compare A B`
    caps.py       the limits derived from mlops.toml [collect] (settings.Collect)
"""
