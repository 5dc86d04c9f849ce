"""Teaching helpers for the notebooks: a computed answer to a "try this" prompt, folded until the reader opens it.

`answer(text)` returns a Markdown display object holding an HTML <details> block. JupyterLab, nbconvert's static
HTML and GitHub all render <details> folded, so the answer (computed in the cell, whose source is itself hidden
with the cell metadata `jupyter: {source_hidden: true}`) stays out of sight until the reader clicks it.
"""
from __future__ import annotations

from IPython.display import Markdown


def answer_markdown(text: str, summary: str = "Answer (computed)") -> str:
    """The <details> block as a string; the blank lines let Markdown inside it render."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string (the answer), got {text!r}")
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError(f"summary must be a non-empty string (the clickable label), got {summary!r}")
    return f"<details><summary>{summary}</summary>\n\n{text.strip()}\n\n</details>"


def answer(text: str, summary: str = "Answer (computed)") -> Markdown:
    """Markdown display object for `answer_markdown(text, summary)`; `display(answer(...))` in a notebook."""
    return Markdown(answer_markdown(text, summary))
