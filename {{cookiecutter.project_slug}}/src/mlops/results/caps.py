"""The caps on what collect accepts from the cluster (mlops.toml `[collect]`, documented in the README).

A member of the results stream that breaks a cap is skipped and listed in the report; the others are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MIB = 1 << 20


@dataclass(frozen=True)
class Caps:
    """Limits, in bytes / members / characters; `from_settings` reads them from mlops.toml `[collect]`."""

    max_file_bytes: int = 256 * MIB  # one file; larger ones are not even sent by the cluster
    max_total_bytes: int = 2048 * MIB  # all extracted files together
    max_members: int = 100_000  # files, directories and skipped entries of the stream
    max_path_length: int = 1024  # bytes of a member's path (UTF-8)
    log_tail_bytes: int = 16 * 1024  # the end of a failed configuration's log in junit.xml / the job log
    log_tail_lines: int = 30

    @property
    def max_stream_bytes(self) -> int:
        """Decompressed bytes read from the stream at most: the total cap, 1 KiB of tar headers per member,
        and 64 KiB for the end of the archive (tar pads to 10 KiB records).

        This is what stops a decompression bomb (a sparse or all-zero file compresses ~1000:1).
        """
        return self.max_total_bytes + 1024 * self.max_members + 64 * 1024

    @classmethod
    def from_settings(cls, settings) -> Caps:
        """From `mlops.settings.Settings.collect` once it exists; until then from the raw `[collect]` table
        of mlops.toml (`mlops.config.Config`), each key optional, each value a positive int."""
        section = getattr(settings, "collect", None)
        if section is None:
            try:
                section = settings["collect"]
            except (KeyError, TypeError):
                section = {}
        values = {}
        for f in fields(cls):
            value = section.get(f.name) if isinstance(section, dict) else getattr(section, f.name, None)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                from ..errors import BadInput

                raise BadInput(f"mlops.toml [collect] {f.name} = {value!r}: give a positive whole number")
            values[f.name] = value
        return cls(**values)


DEFAULT = Caps()
