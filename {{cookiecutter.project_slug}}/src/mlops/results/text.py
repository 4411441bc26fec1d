"""Untrusted text made safe for each place it goes.

Sources of the formats: XML 1.0 section 2.2 (Char production); GitLab's metrics report (one
`name value` per line, OpenMetrics text exposition); OWASP "CSV Injection" (cells a spreadsheet
reads as a formula start with = + - @ tab or CR); Unicode TR #9 and TR #36 / Trojan Source
(CVE-2021-42574: bidirectional format characters make text read differently from what it holds).

A character is *invisible* when it does not print as itself: a control (Cc), a format character
(Cf: the bidi embeddings/overrides/isolates U+202A-U+202E and U+2066-U+2069, LRM/RLM/ALM, zero-width
U+200B-U+200D and U+2060, the BOM U+FEFF, soft hyphen ...), a surrogate (Cs: an undecodable byte
under surrogateescape), private use (Co), unassigned (Cn), a line or paragraph separator (Zl, Zp:
str.splitlines breaks on them), any space but U+0020 (Zs), or one of the marks and letters that
render as nothing (combining grapheme joiner, Hangul fillers, Khmer inherent vowels, variation
selectors). Names with one are refused (`visible`); text with one shows it as an escape (`printable`).
"""

from __future__ import annotations

import re
import unicodedata

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
_BLANK_MARKS_AND_LETTERS = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164, 0xFFA0]
    + list(range(0xFE00, 0xFE10))  # variation selectors 1-16
    + list(range(0xE0100, 0xE01F0))  # variation selectors 17-256
)
_NOT_PRINTABLE_ASCII = re.compile("[^\x20-\x7e]")
# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]; everything else is dropped
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_METRIC_BAD = re.compile(r"[^a-zA-Z0-9_]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def invisible(char: str) -> bool:
    """True for one character that does not print as itself (see the module docstring)."""
    if " " <= char <= "~":
        return False
    return unicodedata.category(char) in _INVISIBLE_CATEGORIES or ord(char) in _BLANK_MARKS_AND_LETTERS


def visible(text: str) -> bool:
    """True when every character of `text` prints as itself (no control, format, bidi or blank character)."""
    return not any(invisible(m.group()) for m in _NOT_PRINTABLE_ASCII.finditer(text))


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{code & 0xFF:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _escape_invisible(text: str, keep: str = "") -> str:
    return _NOT_PRINTABLE_ASCII.sub(
        lambda m: m.group() if m.group() in keep or not invisible(m.group()) else _escape(m.group()), text
    )


def xml_text(value: object) -> str:
    """`value` as text that XML 1.0 can hold: forbidden characters dropped, other invisible ones escaped
    (ElementTree escapes the markup characters)."""
    return _escape_invisible(_NOT_XML.sub("", str(value)), keep="\t\n\r")


def printable(value: object, limit: int = 200) -> str:
    """One line for a log or a message: every invisible character as an escape (\\xNN, \\uNNNN), at
    most `limit` characters."""
    text = _escape_invisible(str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def metric_name(name: str) -> str:
    """A GitLab metrics name: [a-zA-Z_][a-zA-Z0-9_]*, other characters as '_', at most 100 characters."""
    clean = _METRIC_BAD.sub("_", name)[:100]
    return clean if clean[:1].isalpha() or clean[:1] == "_" else "m_" + clean[:98]


def csv_cell(value: object) -> str:
    """A spreadsheet cell that is never read as a formula (a leading ' is what spreadsheets hide); one line,
    invisible characters escaped."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a number is data, also when negative
    text = "" if value is None else str(value)
    formula = text.startswith(_FORMULA_START)
    text = _escape_invisible(re.sub("[\t\r\n]", " ", text))
    return "'" + text if formula or text.startswith(_FORMULA_START) else text


def tail(data: bytes, max_bytes: int, max_lines: int, width: int = 0) -> str:
    """The last `max_lines` lines of `data`, at most `max_bytes` of it, decoded leniently; a tab is four
    spaces, every other invisible character '?'. With `width`, a longer line keeps its end ("..." and
    the last width-3 characters): the end of a 20 MB progress line is the error.

    A 20 MB one-line log gives its last `max_bytes` bytes, not 20 MB. The one tail of mlops
    (mlops.results.reader.file_tail reads a log file for it).
    """
    cut = data[-max_bytes:] if max_bytes > 0 else b""
    text = cut.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = re.split("[\n\r]", text)
    if lines and lines[-1] == "":
        lines.pop()
    lines = lines[-max_lines:] if max_lines > 0 else []
    if width > 3:
        lines = [x if len(x) <= width else "..." + x[3 - width :] for x in lines]
    return "\n".join(
        _NOT_PRINTABLE_ASCII.sub(
            lambda m: "    " if m.group() == "\t" else "?" if invisible(m.group()) else m.group(), x
        )
        for x in lines
    )
