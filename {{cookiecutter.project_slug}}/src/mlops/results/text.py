"""Untrusted text made safe for each place it goes.

Sources of the formats: XML 1.0 section 2.2 (Char production); GitLab's metrics report (one
`name value` per line, OpenMetrics text exposition); OWASP "CSV Injection" (cells a spreadsheet
reads as a formula start with = + - @ tab or CR).
"""

from __future__ import annotations

import re

# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]; everything else is dropped
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Control characters (C0, DEL, C1) and lone surrogates (undecodable bytes under surrogateescape)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_METRIC_BAD = re.compile(r"[^a-zA-Z0-9_]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def xml_text(value: object) -> str:
    """`value` as text that XML 1.0 can hold: forbidden characters dropped (ElementTree escapes the rest)."""
    return _NOT_XML.sub("", str(value))


def printable(value: object, limit: int = 200) -> str:
    """One line for a log or a message: control characters as \\xNN escapes, at most `limit` characters."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def metric_name(name: str) -> str:
    """A GitLab metrics name: [a-zA-Z_][a-zA-Z0-9_]*, other characters as '_', at most 100 characters."""
    clean = _METRIC_BAD.sub("_", name)[:100]
    return clean if clean[:1].isalpha() or clean[:1] == "_" else "m_" + clean[:98]


def csv_cell(value: object) -> str:
    """A spreadsheet cell that is never read as a formula (a leading ' is what spreadsheets hide); one line."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a number is data, also when negative
    text = "" if value is None else str(value)
    formula = text.startswith(_FORMULA_START)
    text = _CONTROL.sub(lambda m: " " if m.group() in "\t\r\n" else "", text)
    return "'" + text if formula or text.startswith(_FORMULA_START) else text


def tail(data: bytes, max_bytes: int, max_lines: int) -> str:
    """The last `max_lines` lines of `data`, at most `max_bytes` of it, decoded leniently, each line printable.

    A 20 MB one-line log gives its last `max_bytes` bytes, not 20 MB.
    """
    cut = data[-max_bytes:] if max_bytes > 0 else b""
    lines = cut.decode("utf-8", errors="replace").splitlines()[-max_lines:] if max_lines > 0 else []
    return "\n".join(
        _CONTROL.sub(lambda m: "" if m.group() == "\t" else "?", line).replace("\t", "    ") for line in lines
    )
