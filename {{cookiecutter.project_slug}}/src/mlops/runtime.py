"""Deprecated: the old place of `mlops.images.runtime`, kept until every room imports it from there.

The lead removes this module after the cluster/ room is merged (its submit.py says `from .. import
runtime`). Nothing is defined here: the names are mlops.images.runtime's.
"""

from __future__ import annotations

from .images.runtime import (  # noqa: F401
    MOUNT,
    RUNTIMES,
    WORKDIR,
    Image,
    Raw,
    Split,
    cluster_root,
    convert_command,
    converted_test,
    run_argv,
    shell_join,
)
