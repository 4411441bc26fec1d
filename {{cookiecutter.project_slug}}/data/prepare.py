"""Prepare the data set: twelve weeks of an hourly, electricity-load-like time series.

Generated deterministically (fixed seed, standard library only), so every run of every commit sees
the same data and nothing is downloaded. Writes into $PROJECT_DIR/data/:
    series.csv   timestamp,load   one row per hour
    meta.json    rows, columns, sha256 of series.csv

To use your own data: replace `make_series` (or read your files there) and keep writing series.csv.
"""
import csv
import hashlib
import json
import math
import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

HOURS = 24 * 7 * 12
SEED = 42


def make_series(hours=HOURS, seed=SEED):
    """Daily cycle + quieter weekends + slow trend + autocorrelated noise."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    noise = 0.0
    for t in range(hours):
        daily = 12 * math.sin(2 * math.pi * ((t % 24) - 6) / 24)
        weekend = -8 if (t // 24) % 7 >= 5 else 0
        noise = 0.7 * noise + rng.gauss(0, 2)
        yield (start + timedelta(hours=t)).isoformat(), round(100 + 0.01 * t + daily + weekend + noise, 3)


def main():
    data_dir = Path(os.environ.get("PROJECT_DIR", "/project")) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / "series.csv.tmp"  # write, then rename: the model never sees half a file
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "load"])
        writer.writerows(make_series())
    tmp.replace(data_dir / "series.csv")
    digest = hashlib.sha256((data_dir / "series.csv").read_bytes()).hexdigest()
    meta = {"rows": HOURS, "columns": ["timestamp", "load"], "sha256": digest, "seed": SEED}
    (data_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {HOURS} rows to {data_dir / 'series.csv'} (sha256 {digest[:12]})")


if __name__ == "__main__":
    main()
