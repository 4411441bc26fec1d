"""The environment research code gets from `mlops run --local`: an allow-list, never a secret.

`child_env`: what a program needs to run here (PASSED: PATH, HOME, locale, temp dir, proxies and CA
bundles, Python and thread/cache settings); `stage_env` adds the stage contract (PROJECT_DIR, RUN_ID,
WANDB_MODE/PROJECT/ENTITY/RUN_GROUP, mlops.runenv), and the runner then the env file of each
configuration. No HPC_*, GITLAB_*, CI_*, WANDB_API_KEY: local runs are offline or disabled, and
`mlops collect` syncs from the machine holding the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from . import runenv, settings

# What the research code may see of this process's environment (by name); everything else is dropped.
_PROCESS = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TEMP", "TMP")
_LOCALE = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")
_NETWORK = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_CA = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT")
_PYTHON = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONUTF8", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "VIRTUAL_ENV")
_COMPUTE = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_CACHES = ("XDG_CACHE_HOME", "HF_HOME", "TORCH_HOME", "MPLBACKEND", "MPLCONFIGDIR")
_WANDB = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_SILENT")  # never the API key
PASSED = _PROCESS + _LOCALE + _NETWORK + _CA + _PYTHON + _COMPUTE + _CACHES + _WANDB


def child_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of `environ` (default os.environ) that research code may inherit."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    return {k: source[k] for k in PASSED if k in source}


def stage_env(cfg: settings.Settings, run: Path, run_id: str) -> dict[str, str]:
    """The research code's environment: the allow-listed part of ours plus the stage contract (runenv)."""
    env = child_env()
    env.update(runenv.stage_env(cfg, run_id, str(run)))
    env["WANDB_SILENT"] = "true"
    return env
