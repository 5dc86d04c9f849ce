"""Rows of dicts as a table: plain text for terminals, Markdown for notebooks. The one formatter in longlab."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


def format_cell(value) -> str:
    """Floats with 4 significant digits; so are numbers read back from CSV as strings ("0.0123456" -> "0.01235"),
    but a string that already shows its number with at most 4 significant digits stays as written ("1.00" is not
    turned into "1")."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    if isinstance(value, str) and ("." in text or "e" in text):
        try:
            number = float(text)
        except ValueError:
            return text
        short = f"{number:.4g}"
        return text if float(short) == number else short
    return text


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, *, markdown: bool = False,
                 formats: Mapping[str, Callable[[object], str]] | None = None,
                 headers: Mapping[str, str] | None = None, align_right: bool = False) -> str:
    """rows (dicts) -> a table of `columns` (default: the first row's keys), one line per row.

    markdown=False: right-aligned plain text with a dashed rule under the header (for print).
    markdown=True: a Markdown table (for display(Markdown(...)) in a notebook).
    formats: column -> function(value) -> str, overriding `format_cell` for that column.
    headers: column -> the title shown instead of the column name. A missing value prints as "".
    align_right: Markdown columns right-aligned (plain text always is).
    """
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    formats, headers = formats or {}, headers or {}
    titles = [headers.get(c, c) for c in columns]
    body = [[formats.get(c, format_cell)(row[c]) if c in row else "" for c in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(titles) + " |", "|" + ("---:|" if align_right else "---|") * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(t), *(len(cells[i]) for cells in body)) for i, t in enumerate(titles)]
    lines = ["  ".join(t.rjust(w) for t, w in zip(titles, widths)), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + ["  ".join(v.rjust(w) for v, w in zip(cells, widths)) for cells in body])
