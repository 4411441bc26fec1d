"""The caps on what collect accepts from the cluster: `settings.Collect` (mlops.toml `[collect]`).

The six numbers, their defaults and their rules are defined once, in `mlops.options.SETTINGS_KEYS`,
and typed by `settings.Collect`; this module only derives the limits that follow from them. A member
of the results stream that breaks a cap is skipped and listed in the report; the others are kept.
"""

from __future__ import annotations

import dataclasses

from .. import options
from ..settings import Collect

# Linux PATH_MAX: an extended tar header names a path and a link target, each at most this long.
PATH_MAX = 4096
# Extended headers that apply to one member may chain (GNU tar: 'K' then 'L'; POSIX: 'x'); an honest
# stream never has more than a few in a row.
MAX_CHAINED_HEADERS = 4


def defaults(**overrides: int) -> Collect:
    """`settings.Collect` with the defaults of options.SETTINGS_KEYS, some of them replaced (tests, tools).

    Raises TypeError for a name that is not a [collect] key.
    """
    values = {k.name: k.default for k in options.SETTINGS_KEYS if k.section == "collect"}
    return dataclasses.replace(Collect(**values), **overrides)  # type: ignore[arg-type]


def max_stream_bytes(caps: Collect) -> int:
    """Decompressed bytes read from the stream at most: the total cap, 1 KiB of tar headers per member,
    and 64 KiB for the end of the archive (tar pads to 10 KiB records).

    This is what stops a decompression bomb (a sparse or all-zero file compresses ~1000:1).
    """
    return caps.max_total_bytes + 1024 * caps.max_members + 64 * 1024


def max_header_bytes(caps: Collect) -> int:
    """Bytes of one extended tar header (PAX 'x'/'g', GNU 'L'/'K') at most, and of all global PAX
    headers together: room for a path and a link target (each max(max_path_length, PATH_MAX)) plus
    4 KiB of other records (times, ids, size). Larger headers are refused before they are read."""
    return 2 * max(caps.max_path_length, PATH_MAX) + 4096
