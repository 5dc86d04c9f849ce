"""The one table formatter: plain text and Markdown from the same rows."""
from __future__ import annotations

from longlab.table import format_cell, format_table

ROWS = [{"N": 1024, "causal": False, "speedup": 3.14159, "note": "x"}, {"N": 65536, "causal": True, "speedup": 15.0}]


def test_text_table_is_right_aligned_with_a_rule():
    assert format_table(ROWS, ["N", "causal", "speedup"]).splitlines() == [
        "    N  causal  speedup",
        "-----  ------  -------",
        " 1024   False    3.142",
        "65536    True       15",
    ]


def test_markdown_table_and_missing_values():
    assert format_table(ROWS, markdown=True).splitlines() == [
        "| N | causal | speedup | note |",
        "|---|---|---|---|",
        "| 1024 | False | 3.142 | x |",
        "| 65536 | True | 15 |  |",
    ]


def test_formats_and_headers_override_per_column():
    text = format_table(ROWS, ["N"], markdown=True, formats={"N": lambda n: f"{n:,}"}, headers={"N": "tokens"},
                        align_right=True)
    assert text.splitlines() == ["| tokens |", "|---:|", "| 1,024 |", "| 65,536 |"]


def test_cells_from_csv_strings():
    assert [format_cell(v) for v in ["0.0123456", "1e-07", "2.13.0+cpu", "12", 7, True]] == [
        "0.01235", "1e-07", "2.13.0+cpu", "12", "7", "True"]
    # Strings formatted by the caller keep their digits when nothing would be rounded away.
    assert [format_cell(v) for v in ["1.00", "0.50", "95.0", "61.045156519001466", "3.14159"]] == [
        "1.00", "0.50", "95.0", "61.05", "3.142"]
    assert format_table([]) == "(no rows)"
