"""CSV tables that people open in spreadsheets (`mer predict`'s output, the timeline and the Space's download).

A cell whose text begins with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel, LibreOffice and
Google Sheets, and speech recognition often begins a line with "- ": such text is written with a leading apostrophe
(`'`), the neutralisation OWASP recommends against CSV injection, which spreadsheets show as plain text. JSON and
JSON Lines outputs keep the exact text.
"""

from __future__ import annotations

__all__ = ["FORMULA_STARTS", "spreadsheet_safe"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """`value` as a CSV cell: text that a spreadsheet would run as a formula gets a leading apostrophe; anything else
    (numbers included) is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
