"""The caps on what collect accepts from the cluster: mlops.toml `[collect]` (`settings.Collect`).

Defaults live in `mlops.options.SETTINGS_KEYS` only (documented in the README). A member of the
results stream that breaks a cap is skipped and listed in the report; the others are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .. import options
from ..errors import BadInput


def _default(name: str) -> int:
    key = next(k for k in options.SETTINGS_KEYS if k.section == "collect" and k.name == name)
    return int(str(key.default))


@dataclass(frozen=True)
class Caps:
    """Limits in bytes / members; `from_settings` takes them from the settings."""

    max_file_bytes: int = field(default_factory=lambda: _default("max_file_bytes"))  # one file
    max_total_bytes: int = field(default_factory=lambda: _default("max_total_bytes"))  # all extracted files
    max_members: int = field(default_factory=lambda: _default("max_members"))  # members read from the stream
    max_path_length: int = field(default_factory=lambda: _default("max_path_length"))  # bytes of a member's path
    log_tail_bytes: int = field(default_factory=lambda: _default("log_tail_bytes"))  # of a log, in reports
    log_tail_lines: int = field(default_factory=lambda: _default("log_tail_lines"))

    @property
    def max_stream_bytes(self) -> int:
        """Decompressed bytes read from the stream at most: the total cap, 1 KiB of tar headers per member,
        and 64 KiB for the end of the archive (tar pads to 10 KiB records).

        This is what stops a decompression bomb (a sparse or all-zero file compresses ~1000:1).
        """
        return self.max_total_bytes + 1024 * self.max_members + 64 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> Caps:
        """From `settings.Settings` (its validated `collect` section), or from anything whose
        `["collect"]` is a dict (the old `config.Config`, tests): there each key is optional and
        must be a whole number >= 0 (>= 1 except for the log tail); raises BadInput otherwise."""
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
            least = 0 if f.name.startswith("log_tail") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise BadInput(f"mlops.toml [collect] {f.name} = {value!r}: give a whole number >= {least}")
            values[f.name] = value
        return cls(**values)


DEFAULT = Caps()
