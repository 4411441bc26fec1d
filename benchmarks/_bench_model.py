"""The model the cluster benchmarks train: the template's model/ folder with train.py replaced by a
stand-in that takes WORK_SECONDS (sleep, so that the figure measures orchestration, not the CPU
contention of a shared 2-core machine) and writes metrics.json as the contract asks. Standard library
only, so its image needs nothing from PyPI."""

TRAIN_PY = '''"""Benchmark stand-in for training: WORK_SECONDS of work, then $RESULT_DIR/metrics.json."""
import json
import os
import time
from pathlib import Path

started = time.time()
time.sleep(float(os.environ["WORK_SECONDS"]))
result = Path(os.environ["RESULT_DIR"])
result.mkdir(parents=True, exist_ok=True)
(result / "metrics.json").write_text(json.dumps({"seed": int(os.environ["SEED"]),
                                                 "train_seconds": round(time.time() - started, 3)}) + "\\n")
'''
REQUIREMENTS = "# the benchmark model uses the standard library only\n"
FILES = {"train.py": TRAIN_PY, "requirements.txt": REQUIREMENTS}


def parameters(n: int, seconds: float) -> dict:
    return {"fixed": {"work_seconds": seconds}, "grid": {"seed": list(range(n))}, "max_configurations": max(n, 1)}
